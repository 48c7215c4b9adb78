#!/usr/bin/env python3
"""How close a sweep's dry-run estimate comes to its time: the automatic mode on the test
data's iris, diabetes and breast cancer training files, seeds 0-2, against a fresh release
server. Run from the repository root after `cargo build --release`:

    python3 bench/sweep_estimate.py
"""
import json, os, subprocess, time, urllib.request, socket, tempfile, sys
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
def free_port():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
port=free_port(); base=f"http://127.0.0.1:{port}"
d=tempfile.mkdtemp()
srv=subprocess.Popen([os.path.join(ROOT, "target/release/backprop"),"serve","--listen",f"127.0.0.1:{port}","--data-dir",d],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
def call(m,p,body=None,ct="application/json"):
    data=None if body is None else (body if isinstance(body,bytes) else json.dumps(body).encode())
    r=urllib.request.Request(base+p,data=data,method=m,headers={"content-type":ct})
    with urllib.request.urlopen(r,timeout=600) as f: return json.load(f)
for _ in range(100):
    try: call("GET","/healthz"); break
    except Exception: time.sleep(0.1)
for name in ["breast_cancer","diabetes","iris"]:
    for seed in [0,1,2]:
        ds=call("POST",f"/v1/datasets?name={name}&target=target",open(os.path.join(ROOT, f"tests/data/{name}.train.csv"),"rb").read(),"text/csv")
        req={"dataset_id":ds["id"],"seed":seed}
        e=call("POST","/v1/sweeps?dry_run=true",req)
        t0=time.time(); s=call("POST","/v1/sweeps",req)
        while s["status"] in ("queued","running"):
            time.sleep(0.2); s=call("GET",f"/v1/sweeps/{s['id']}")
        took=time.time()-t0
        jobs=call("GET",f"/v1/jobs?sweep_id={s['id']}&limit=500")
        print(json.dumps({"dataset":name,"seed":seed,"rows":ds["rows"],"est_s":e["estimated_seconds"],"est_jobs":e["jobs"],"est_epochs":e["epochs"],"took_s":round(took,1),"jobs":jobs["total"],"epochs_done":s["progress"]["epochs_done"],"status":s["status"]}),flush=True)
srv.terminate()
srv.wait()
import shutil
shutil.rmtree(d, ignore_errors=True)
