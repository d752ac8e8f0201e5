"""Total kept |W| (2 of every 4 along each conv's input channels, per kernel position) of the digits CNN's 2:4 convs,
identity vs permuted with sparse24.permute's default importance (|W|), for the three cached trained models."""
import sys, copy, torch, logging
logging.disable(logging.WARNING)
sys.path.insert(0, "bench")  # run from the repository root
import oneshot_models as models
from sparse24 import permute
def kept(model):
    total = 0.0
    for name in ("block1.conv1", "block1.conv2", "down.0", "block2.conv1", "block2.conv2"):
        w = model.get_submodule(name).weight.detach().abs().permute(0, 2, 3, 1).reshape(-1, 4)
        total += float(w.topk(2, dim=1).values.sum())
    return total
for seed in (0, 1, 2):
    dense = models.load("digits-resnet", recipe=models.seeded("digits-resnet", seed))  # trained (deterministic) if not cached
    m = copy.deepcopy(dense)
    r = permute(m)
    print(seed, f"identity {kept(dense):.4f} permuted {kept(m):.4f} groups {len(r.groups)}")
