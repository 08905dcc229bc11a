import os, subprocess, sys
from reidctl.store import MilvusStore

def test_t(milvus_server):
    uri = milvus_server
    for w in ["create_collection:_local", "create_collection:_global", "create_index:_local", "create_index:_global", "load_collection:_global"]:
        with MilvusStore(uri, "crash") as s:
            s.drop()
        env = dict(os.environ, KILL_AFTER=w)
        r = subprocess.run([sys.executable, "/tmp/crashprobe/exp/hook_create.py", "ingest", "/tmp/crashprobe/small", "--uri", uri, "--collection", "crash", "--json"], env=env, capture_output=True, text=True)
        r2 = subprocess.run([sys.executable, "-m", "reidctl.cli.main", "ingest", "/tmp/crashprobe/small", "--uri", uri, "--collection", "crash", "--json"], capture_output=True, text=True, timeout=300)
        print(w, r.returncode, "->", r2.returncode, r2.stderr.strip()[-300:], r2.stdout.replace("\n", "")[:80])
