"""thaw serve --instance-user USER: instances run as USER, not root, so a
handler can neither read the admin token nor change its own image's files
(which other versions share); the daemon says so, and says why snapshots
are off where CRIU could not dump another user's process."""
import os
import pwd
import stat

from thawtest import Daemon, check, criu_works, finish, handler_so, skip, wait_for

if os.geteuid() != 0:
    skip("needs root")
try:
    nobody = pwd.getpwnam("nobody")
except KeyError:
    skip("no user nobody")

d = Daemon({"f": {"handler": handler_so("fault"), "timeout": 5}}, args=["--instance-user", "nobody"])
# the harness's folders are private (mkdtemp): let the instances' user in
for p in (d.tmp, d.fn_dir, os.path.join(d.fn_dir, "f")):
    os.chmod(p, 0o755)
with d:
    r = d.request("GET", "/f/whoami")
    check(r.status == 200 and r.json() == {"uid": nobody.pw_uid, "gid": nobody.pw_gid},
          "the instance runs as nobody", r)
    token = os.path.join(d.state_dir, "admin.token")
    r = d.request("GET", "/f/open?path=" + token)
    check(r.status == 200 and r.json() == {"read": 13, "write": 13}, "the admin token: EACCES both ways", r)
    own = os.path.join(d.fn_dir, "f", "fc.yaml")
    r = d.request("GET", "/f/open?path=" + own)
    check(r.status == 200 and r.json() == {"read": 0, "write": 13}, "its own function files: read, not write", r)
    mode = stat.S_IMODE(os.stat(d.state_dir).st_mode)
    check(mode == 0o711, "the state folder lets the instances through, lists nothing", oct(mode))
    check(stat.S_IMODE(os.stat(token).st_mode) == 0o600, "the token stays 0600")
    logs = d.logs()
    check("instances run as nobody (uid %d" % nobody.pw_uid in logs, "the daemon says who instances run as")
    # which one happens is decided by the machine, probed here: CRIU working,
    # and CAP_SYS_RESOURCE in this process's effective set (the daemon's)
    no_criu = criu_works()
    cap_eff = int([l for l in open("/proc/self/status") if l.startswith("CapEff:")][0].split()[1], 16)
    if no_criu:
        check("snapshots off: " in logs and "snapshot of" not in logs, "no CRIU: snapshots off, said", logs[-1500:])
    elif cap_eff & (1 << 24):  # CAP_SYS_RESOURCE
        check(wait_for(lambda: "snapshot of" in d.logs()), "CRIU and CAP_SYS_RESOURCE: a snapshot of the nobody instance",
              logs[-1500:])
    else:
        check("criu can dump another user's process only with CAP_SYS_RESOURCE" in logs and "snapshot of" not in logs,
              "CRIU without CAP_SYS_RESOURCE: snapshots off, the reason said", logs[-1500:])
    r = d.request("POST", "/f/", body=b"still serves")
    check(r.status == 200 and r.body == b"still serves", "it serves")

r = Daemon(args=["--instance-user", "no-such-user-here"], wait_ready=False)
try:
    r.start()
    started = True
except RuntimeError as e:
    started = False
    check("--instance-user no-such-user-here: no such user" in str(e), "an unknown user: a clear error", str(e)[-300:])
finally:
    r.stop()
check(not started, "an unknown user stops thaw serve")

finish()
