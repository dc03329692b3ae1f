"""tests/run.sh itself: skips are counted and shown, never a pass by
accident. Builds a fake tree of tests (real cmocka binaries and thawtest
scripts) in a temporary folder and runs a copy of tests/run.sh over it:
  - a cmocka binary whose every case skips is a SKIP (it was a PASS);
  - skipped cases of a passing binary or e2e test are counted in the closing
    line and their reasons shown;
  - THAW_NO_SKIP=1 fails every skip but "skip[no-gpu]";
  - a test that failed a check and then exits 77 is a FAIL (it was a SKIP)."""
import os
import shutil
import subprocess
import tempfile

from thawtest import ROOT, check, finish, skip

CC = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
if not CC:
    skip("no C compiler to build the fake cmocka tests")

CMOCKA = r'''#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"
static void ok(void **s) { (void)s; assert_true(1); }
static void bare(void **s) { (void)s; skip(); }
static void why(void **s) { (void)s; SKIP_BECAUSE("no frobnicator"); }
static void gpu(void **s) { (void)s; SKIP_NO_GPU("no GPU here"); }
int main(void) {
	const struct CMUnitTest t[] = { %s };
	return cmocka_run_group_tests(t, NULL, NULL);
}
'''
UNITS = {  # name: cases
    "test_allskip": "bare, bare",
    "test_someskip": "ok, why",
    "test_gpuskip": "ok, gpu",
    "test_allgpu": "gpu",
}
PY = {
    "test_part": 'check(True, "x"); skip_part("no widget"); finish()',
    "test_gpu77": 'skip("no GPU", no_gpu=True)',
    "test_failskip": 'check(False, "broken"); skip("no widget")',
    "test_clean": 'check(True, "x"); finish()',
}


def tree():
    t = tempfile.mkdtemp(prefix="thaw-runner-")
    os.makedirs(os.path.join(t, "tests", "e2e"))
    os.makedirs(os.path.join(t, "build", "tests", "unit"))
    shutil.copy(os.path.join(ROOT, "tests", "run.sh"), os.path.join(t, "tests", "run.sh"))
    shutil.copy(os.path.join(ROOT, "tests", "e2e", "thawtest.py"), os.path.join(t, "tests", "e2e"))
    for name, cases in UNITS.items():
        src = os.path.join(t, name + ".c")
        with open(src, "w") as f:
            f.write(CMOCKA % ", ".join("cmocka_unit_test(%s)" % c for c in cases.split(", ")))
        subprocess.run([CC, "-I", os.path.join(ROOT, "tests", "unit"), src, "-o",
                        os.path.join(t, "build", "tests", "unit", name), "-lcmocka"], check=True)
    for name, body in PY.items():
        with open(os.path.join(t, "tests", "e2e", name + ".py"), "w") as f:
            f.write("from thawtest import *\n" + body + "\n")
    # a shell test that prints a failed check and exits 77 without thawtest
    with open(os.path.join(t, "tests", "e2e", "test_raw77.sh"), "w") as f:
        f.write('echo "FAIL something"; echo "skip: gone"; exit 77\n')
    return t


def run(t, strict):
    env = dict(os.environ, THAW_NO_SKIP="1" if strict else "0")
    env.pop("THAW_BUILD", None)
    p = subprocess.run(["bash", os.path.join(t, "tests", "run.sh"), os.path.join(t, "build")],
                       capture_output=True, text=True, env=env, timeout=120)
    lines = p.stdout.splitlines()
    status = {}
    for l in lines:
        for word in ("PASS", "FAIL", "SKIP"):
            if l.startswith(word + " "):
                status[l.split()[1].rstrip(":")] = word
    # the cases line, then the closing line alone
    return p.returncode, status, "; ".join(lines[-2:]) if len(lines) > 1 else "", p.stdout


t = tree()
try:
    rc, st, last, out = run(t, strict=False)
    print(out)
    check(st.get("unit/test_allskip") == "SKIP", "a cmocka binary whose every case skipped is a skip", st)
    check(st.get("unit/test_allgpu") == "SKIP", "every case skipped for no GPU: a skip", st)
    check(st.get("unit/test_someskip") == "PASS" and "1 cases skipped" in out, "partial skip passes, counted", out)
    check("skip: no frobnicator" in out, "the reason of a skipped case is shown", out)
    check(st.get("e2e/test_part") == "PASS" and "skip: no widget" in out, "an e2e part left out is counted", st)
    check(st.get("e2e/test_failskip") == "FAIL", "thawtest: a skip after a failed check is a failure", st)
    check(st.get("e2e/test_raw77") == "FAIL", "run.sh: exit 77 after a FAIL line is a failure", st)
    check(st.get("e2e/test_gpu77") == "SKIP" and st.get("e2e/test_clean") == "PASS", "plain skip and pass", st)
    check(last == "3 cases skipped in 3 passed tests; 4 passed, 2 failed, 3 skipped",
          "closing line counts files and cases", last)
    check(rc == 1, "failures fail the run", rc)

    rc, st, last, out = run(t, strict=True)
    print(out)
    check(st.get("unit/test_allskip") == "FAIL", "THAW_NO_SKIP=1: an all-skip binary fails", st)
    check(st.get("unit/test_someskip") == "FAIL", "THAW_NO_SKIP=1: an unexpected skipped case fails", st)
    check(st.get("e2e/test_part") == "FAIL", "THAW_NO_SKIP=1: an e2e part left out fails", st)
    check(st.get("unit/test_gpuskip") == "PASS" and st.get("unit/test_allgpu") == "SKIP"
          and st.get("e2e/test_gpu77") == "SKIP", "THAW_NO_SKIP=1: no-GPU skips stay skips", st)
    check(last == "1 cases skipped in 1 passed tests; 2 passed, 5 failed, 2 skipped",
          "strict closing line", last)
finally:
    shutil.rmtree(t, ignore_errors=True)
finish()
