import sys, io, json, subprocess, itertools
import numpy as np
from PIL import Image
from multiprocessing import Pool
PH='/work/shared/corpus/photos/'
def load(n): return np.asarray(Image.open(PH+n+'.png').convert('RGB'))
def run(job):
    name, k, variant = job
    import kmcodec
    from kmcodec import masking, metrics
    rgb = load(name)
    if variant == 'pngq':
        r = subprocess.run(['pngquant',*([] if REF_DITHER else ['--nofs']),str(k),'-'], input=open(PH+name+'.png','rb').read(), capture_output=True)
        out = np.asarray(Image.open(io.BytesIO(r.stdout)).convert('RGB')); size=len(r.stdout)
    else:
        opts = dict(variant_opts[variant])
        span = opts.pop('span', 8); scale = opts.pop('scale', 200)
        from kmcodec import dither as dm
        for c in ('CARRY_SPACINGS','MAP_FULL','MAP_NONE'):
            if c in opts: setattr(dm, c, tuple(opts.pop(c)))
        masking.SPAN, masking.SCALE = span, scale
        data = kmcodec.encode(rgb, k, **opts)
        out = np.asarray(kmcodec.decode(data)); size=len(data)
    return name, k, variant, metrics.ssimulacra2(rgb, out), metrics.psnr(rgb, out), size
variant_opts = json.loads(sys.argv[1])
REF_DITHER = len(sys.argv) > 5 and sys.argv[5] == 'fs'
names = sys.argv[2].split(',')
ks = [int(x) for x in sys.argv[3].split(',')]
jobs = [(n,k,v) for n in names for k in ks for v in ['pngq', *variant_opts]]
res = {}
with Pool(2) as p:
    for r in p.imap_unordered(run, jobs):
        res[r[:3]] = r[3:]
out = []
for v in variant_opts:
    for k in ks:
        d = [res[(n,k,v)][0]-res[(n,k,'pngq')][0] for n in names]
        dp = [res[(n,k,v)][1]-res[(n,k,'pngq')][1] for n in names]
        i = int(np.argmin(d))
        br = [res[(n,k,v)][2]/res[(n,k,'base' if 'base' in variant_opts else 'pngq')][2] for n in names]
        print(f"{v:14s} k={k:3d} median {np.median(d):+6.2f} mean {np.mean(d):+6.2f} worst {d[i]:+6.2f} ({names[i]}) psnr {np.median(dp):+.2f} bytes/base {np.median(br):.3f}", flush=True)
json.dump({repr(k): v for k, v in res.items()}, open(sys.argv[4], 'w'))
