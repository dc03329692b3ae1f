"""Runs a command under a seccomp profile in the Docker/containerd JSON
format (deploy/seccomp-thaw.json), installed the way a container runtime
installs it: the default action, then every listed syscall allowed. The
filter is inherited by everything the command starts (thaw serve, its
instances, criu), as in a pod. Used by tests/e2e/test_k8s.py.

    python3 seccomp_exec.py PROFILE [--drop NAME,...] -- COMMAND ARGS...

--drop leaves those syscalls out (to see what fails without them). Only
what the shipped profile uses is supported: SCMP_ACT_ERRNO by default,
SCMP_ACT_ALLOW rules without argument filters or capability conditions;
anything else is refused rather than installed differently. Names the local
libseccomp cannot resolve for this architecture are skipped, as runc does,
and listed on stderr. No no_new_privs bit: in a pod that allows privilege
escalation (the manifests do) the runtime does not set it either; loading
the filter without it needs CAP_SYS_ADMIN. Needs python3-seccomp."""
import json
import os
import sys

import seccomp


def main(argv):
    if "--" not in argv or len(argv) < 3:
        sys.exit("usage: seccomp_exec.py PROFILE [--drop NAME,...] -- COMMAND ARGS...")
    sep = argv.index("--")
    opts, cmd = argv[1:sep], argv[sep + 1:]
    drop = set()
    if len(opts) == 3 and opts[1] == "--drop":
        drop = set(opts[2].split(","))
    elif len(opts) != 1:
        sys.exit("seccomp_exec.py: bad options %r" % opts)
    with open(opts[0]) as f:
        prof = json.load(f)
    if prof.get("defaultAction") != "SCMP_ACT_ERRNO":
        sys.exit("seccomp_exec.py: defaultAction %r not supported" % prof.get("defaultAction"))
    # THAW_SECCOMP_LOG=1: allow what the profile denies but have the kernel
    # log it (audit type 1326 in dmesg): to find what a profile lacks
    deny = seccomp.LOG if os.environ.get("THAW_SECCOMP_LOG") == "1" else seccomp.ERRNO(prof.get("defaultErrnoRet", 1))
    filt = seccomp.SyscallFilter(defaction=deny)
    filt.set_attr(seccomp.Attr.CTL_NNP, 0)
    unknown = []
    for rule in prof["syscalls"]:
        if rule.get("action") != "SCMP_ACT_ALLOW" or rule.get("args") or rule.get("includes") or rule.get("excludes"):
            sys.exit("seccomp_exec.py: rule %r not supported" % rule.get("names", [])[:3])
        for name in rule["names"]:
            if name in drop:
                continue
            try:
                filt.add_rule(seccomp.ALLOW, name)
            except (RuntimeError, ValueError, OSError):
                unknown.append(name)
    if unknown:
        sys.stderr.write("seccomp_exec.py: not on this architecture, skipped: %s\n" % " ".join(unknown))
    filt.load()
    os.execvp(cmd[0], cmd)


main(sys.argv)
