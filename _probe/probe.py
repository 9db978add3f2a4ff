import torch, time, sys, numpy as np
from types import SimpleNamespace
sys.path.insert(0, 'src')
from m3dhmr.models import build_model, ModelConfig
torch.set_num_threads(int(sys.argv[1]))
d = np.load('_probe/topo.npz')
L = 4
topo = SimpleNamespace(spirals=[d[f'spiral{l}'] for l in range(L)], faces=[d[f'faces{l}'] for l in range(L)],
    up=[d[f'up{l}'] for l in range(L-1)], regions=d['regions'], roi_spirals=d['roi'], joint_regressor=d['jreg'])
cfgs = {'m3dhmr': ModelConfig(), 'spiral': ModelConfig(conv='spiral', roi=False), 'dsconv': ModelConfig(conv='dsconv', roi=False),
        'dsc_noroi': ModelConfig(roi=False), 'spiral_roi': ModelConfig(conv='spiral')}
models = {n: build_model(c, topo).eval() for n, c in cfgs.items()}
x = torch.rand(1,3,128,128)
def timeit(f, n):
    ts=[]
    for _ in range(n):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    return float(np.median(ts))
res = {n: [] for n in models}; dec = {n: [] for n in models}
with torch.inference_mode():
    bo = models['m3dhmr'].backbone(x)
    for m in models.values(): m(x)
    for rep in range(5):
        for n, m in models.items():
            res[n].append(timeit(lambda: m(x), 10))
            dec[n].append(timeit(lambda: m.decoder(bo.features, bo.joints2d), 30))
    bb = timeit(lambda: models['m3dhmr'].backbone(x), 20)
print('backbone ms', bb*1e3)
for n in models:
    print(f"{n:12s} full {np.median(res[n])*1e3:7.2f} ms  decoder {np.median(dec[n])*1e3:6.2f} ms  fps {1/np.median(res[n]):.1f}")
print('ratio m3dhmr/spiral fps', np.median(res['spiral'])/np.median(res['m3dhmr']))
