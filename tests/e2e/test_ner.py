"""End to end: the ner handler behind POST /ner with the example model
(handlers/ner/example): 重庆市 found in text, batched tokens with padding,
random integer logits decoded exactly like a pure-Python reference of the
classic padded viterbi_decode (on the CPU and with NER_DEVICE=auto, the GPU
when there is one), 400s for bad requests, and a missing transition matrix
failing init with a clear message."""
import json
import os
import random
import shutil
import time

from thawtest import BUILD, ROOT, Daemon, check, finish, handler_so, need_built

NER = handler_so("ner")
need_built(os.path.join(BUILD, "thaw"), NER)

EXAMPLE = os.path.join(ROOT, "handlers", "ner", "example")
TAGS = open(os.path.join(EXAMPLE, "tags.txt")).read().split()
TRANS = json.load(open(os.path.join(EXAMPLE, "transitions.json")))["transitions"]
K = len(TAGS)
SMALL = -1000.0


def viterbi(logits, n):
    """The classic numpy viterbi_decode with the start-state padding, in
    Python floats (exact here: every score is a small multiple of 0.5)."""
    score = [[SMALL] * K + [0.0]] + [list(logits[t]) + [SMALL] for t in range(n)]
    trellis = [score[0]]
    back = [None]
    for t in range(1, n + 1):
        row, arg = [], []
        for j in range(K + 1):
            v = [trellis[t - 1][i] + TRANS[i][j] for i in range(K + 1)]
            best = max(range(K + 1), key=lambda i: (v[i], -i))  # first maximum
            row.append(score[t][j] + v[best])
            arg.append(best)
        trellis.append(row)
        back.append(arg)
    last = max(range(K + 1), key=lambda j: (trellis[n][j], -j))
    path = [last]
    for t in range(n, 1, -1):
        path.append(back[t][path[-1]])
    return list(reversed(path))[:n] if n else []


def entities(path, tokens):
    """BIO with the lenient rule: I-X not after B-X/I-X starts an entity."""
    out, cur = [], None
    for t, tag in enumerate(path):
        name = TAGS[tag] if tag < K else "O"
        kind, typ = (name[0], name[2:]) if name[:2] in ("B-", "I-") and len(name) > 2 else ("O", None)
        if kind == "I" and cur and cur["type"] == typ:
            cur["end"] = t + 1
            continue
        cur = None
        if kind != "O":
            cur = {"start": t, "end": t + 1, "type": typ}
            out.append(cur)
    for e in out:
        e["word"] = "".join(tokens[e["start"]:e["end"]])
    return out


def onehot(tags, margin=5):
    return [[margin if j == TAGS.index(tag) else 0 for j in range(K)] for tag in tags]


def function(device, **env):
    e = {"NER_DEVICE": device}
    e.update(env)
    return {"handler": NER, "instanceConcurrency": 4, "environmentVariables": e}


d = Daemon({"ner": function("cpu"), "ner_auto": function("auto")})
for name in ("ner", "ner_auto"):
    for f in ("tags.txt", "transitions.json"):
        shutil.copy(os.path.join(EXAMPLE, f), os.path.join(d.fn_dir, name, f))

with d:
    def post(fn, body):
        return d.request("POST", "/" + fn, body=json.dumps(body, ensure_ascii=False).encode(),
                         headers={"Content-Type": "application/json"})

    text = "我在重庆市工作"
    body = {"text": [text], "lengths": [7],
            "logits": [onehot(["O", "O", "B-LOC", "I-LOC", "I-LOC", "O", "O"])]}
    r = post("ner", body)
    check(r.status == 200 and r.json() == {"entities": [[{"word": "重庆市", "start": 2, "end": 5, "type": "LOC"}]]},
          "重庆市 is a LOC", r)
    check(r.header("x-ner-device") == "cpu", "NER_DEVICE=cpu decodes on the CPU", r.headers)
    r = d.request("POST", "/ner/", body=json.dumps(body).encode())
    check(r.status == 200 and r.json()["entities"][0][0]["word"] == "重庆市", "POST /ner/ too", r)

    # single-sequence form, tags returned
    r = post("ner", {"text": "张三在重庆市", "return_tags": True,
                     "logits": onehot(["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC"])})
    check(r.status == 200 and r.json() == {
        "entities": [{"word": "张三", "start": 0, "end": 2, "type": "PER"},
                     {"word": "重庆市", "start": 3, "end": 6, "type": "LOC"}],
        "tags": ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC"]}, "unbatched text with tags", r)

    # batched tokens, padded logits: steps past each length are ignored
    seqs = [(list("重庆市长江大桥"), ["B-LOC", "I-LOC", "I-LOC", "B-LOC", "I-LOC", "I-LOC", "I-LOC"]),
            (list("腾讯公司"), ["B-ORG", "I-ORG", "I-ORG", "I-ORG"])]
    steps = 9
    logits = [onehot(tags) + [[0] * K] * (steps - len(tags)) for _, tags in seqs]
    r = post("ner", {"tokens": [t for t, _ in seqs], "lengths": [len(t) for t, _ in seqs], "logits": logits})
    check(r.status == 200 and r.json() == {"entities": [
        [{"word": "重庆市", "start": 0, "end": 3, "type": "LOC"}, {"word": "长江大桥", "start": 3, "end": 7, "type": "LOC"}],
        [{"word": "腾讯公司", "start": 0, "end": 4, "type": "ORG"}]]}, "batch with padding, adjacent entities", r)

    # random integer logits: exactly the reference decode, on both functions
    rng = random.Random(7)
    batch, steps = 24, 40
    chars = "重庆市北京上海张三李四王五腾讯阿里巴巴公司在是的了"
    tokens = [[rng.choice(chars) for _ in range(steps)] for _ in range(batch)]
    lengths = [rng.randint(0, steps) for _ in range(batch)]
    logits = [[[rng.randint(-3, 3) for _ in range(K)] for _ in range(steps)] for _ in range(batch)]
    want = [entities(viterbi(logits[b], lengths[b]), tokens[b]) for b in range(batch)]
    req = {"tokens": tokens, "lengths": lengths, "logits": logits, "return_tags": True}
    for fn in ("ner", "ner_auto"):
        r = post(fn, req)
        got = r.json() if r.status == 200 else {}
        check(got.get("entities") == want, "%s: random batch matches the Python reference" % fn, r)
        tags = [[TAGS[t] if t < K else "O" for t in viterbi(logits[b], lengths[b])] for b in range(batch)]
        check(got.get("tags") == tags, "%s: tags match the reference paths" % fn)
    print("ner_auto decoded on: %s" % r.header("x-ner-device"))

    # bad requests: 400 {"error": ...} naming the field
    z = [0] * K
    for what, bad, msg in [
            ("lengths > steps", {"logits": [[z, z]], "lengths": [3]}, "lengths[0] is 3, the logits have 2 steps"),
            ("ragged logits", {"logits": [[z, z], [z]]}, "logits[1] has 1 steps, logits[0] has 2"),
            ("wrong num_tags", {"logits": [[[0, 0, 0]]]}, "logits[0][0] has 3 scores, the model has 7 tags"),
            ("non-number", {"logits": [[z[:6] + ["x"]]]}, "logits[0][0][6]: not a number"),
            ("too few tokens", {"logits": [[z, z]], "tokens": [["a"]], "lengths": [2]},
             "tokens[0] has 1 tokens, its length is 2")]:
        r = post("ner", bad)
        check(r.status == 400 and r.json() == {"error": msg}, "400: " + what, r)
    r = d.request("POST", "/ner", body=b'{"logits": [[')
    check(r.status == 400 and "error" in r.json(), "400: invalid JSON", r)
    r = d.request("GET", "/ner")
    check(r.status == 405, "GET: 405", r)
    check("ner: 7 tags, 3 entity types" in d.logs(), "init logs the model")

# a missing transition matrix: init fails naming the file
d = Daemon({"ner_broken": function("cpu", TRANSITIONS="missing.json")}, wait_ready=False)
shutil.copy(os.path.join(EXAMPLE, "tags.txt"), os.path.join(d.fn_dir, "ner_broken", "tags.txt"))
with d:
    err, r = "", None
    deadline = time.time() + 10
    while time.time() < deadline:
        r = d.request("GET", "/readyz")
        err = r.json().get("functions", {}).get("ner_broken", {}).get("error", "") if r.status == 503 else ""
        if err:
            break
        time.sleep(0.1)
    check("missing.json" in err, "readyz names the missing transition matrix", r and r.body)
    r = d.request("POST", "/ner_broken", body=b'{"logits": []}')
    check(r.status == 503, "broken model: 503", r)

finish()
