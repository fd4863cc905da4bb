"""BD-rate PSNR-YUV of every mode of ONE jsonl file against its first mode:  python bd.py FILE.jsonl"""
import json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tools.bdrate import bd_rate
rows = [json.loads(l) for l in open(sys.argv[1])]
for clip in sorted({r["clip"] for r in rows}):
    R = [r for r in rows if r["clip"] == clip]
    modes = list(dict.fromkeys(r["mode"] for r in R))
    c = {m: sorted((r["bpp"], r["psnr_yuv"]) for r in R if r["mode"] == m) for m in modes}
    base = c[modes[0]]
    for m in modes[1:]:
        if len(c[m]) >= 4 and len(base) >= 4:
            print(clip, repr(m), round(bd_rate(*zip(*base), *zip(*c[m])), 2), "%")
