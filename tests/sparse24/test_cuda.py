"""GPU checks: masks on CUDA tensors, enforcement on CUDA, and PyTorch's sparse kernels accept our weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import sparse24

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]


def sm() -> int:
    major, minor = torch.cuda.get_device_capability()
    return major * 10 + minor


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_mask_on_cuda_matches_cpu(dtype):
    scores = torch.randint(0, 5, (256, 512)).to(dtype)
    assert torch.equal(sparse24.two_four_mask(scores.cuda()).cpu(), sparse24.two_four_mask(scores))


def test_sparsify_and_train_on_cuda():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 8 * 8, 128)).cuda()
    sparse24.sparsify(model, "taylor", data=[torch.randn(8, 32, 8, 8, device="cuda") for _ in range(2)],
                      loss_fn=lambda m, x: m(x).square().mean(), autocast=torch.bfloat16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    scaler = torch.amp.GradScaler("cuda")
    for _ in range(20):
        optimizer.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = model(torch.randn(8, 32, 8, 8, device="cuda")).square().mean()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    sparse24.verify(model)


@pytest.mark.skipif(torch.cuda.is_available() and sm() < 80, reason="2:4 sparse tensor cores need SM >= 80")
def test_torch_semi_structured_accepts_pruned_weight():
    torch.manual_seed(0)
    layer = nn.Linear(1024, 1024, bias=False).half().cuda()
    sparse24.sparsify(layer)
    x = torch.randn(64, 1024, dtype=torch.float16, device="cuda")
    dense_out = F.linear(x, layer.weight)
    sparse_weight = torch.sparse.to_sparse_semi_structured(layer.weight.detach())
    torch.testing.assert_close(F.linear(x, sparse_weight), dense_out, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_finetune_on_cuda_with_amp_distillation_and_resume(tmp_path, amp):
    def build() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 16)).cuda()

    generator = torch.Generator().manual_seed(1)
    data = [(torch.randn(32, 64, generator=generator), torch.randint(0, 16, (32,), generator=generator)) for _ in range(6)]

    def loss_fn(model, batch):
        x, y = batch
        return F.cross_entropy(model(x), y)

    dense = build()
    options = dict(loss_fn=loss_fn, teacher=dense, epochs=2, lr=1e-3, amp=amp, grad_clip=1.0, seed=0, progress=False)
    whole = build()
    sparse24.sparsify(whole)
    history = sparse24.finetune(whole, data, **options)
    sparse24.verify(whole)
    assert all(torch.isfinite(torch.tensor(record["loss"])) for record in history.steps)

    class Stop(Exception):
        pass

    calls = []

    def stopping(model, batch):
        calls.append(1)
        if len(calls) == 9:
            raise Stop
        return loss_fn(model, batch)

    cut = build()
    sparse24.sparsify(cut)
    with pytest.raises(Stop):
        sparse24.finetune(cut, data, **{**options, "loss_fn": stopping}, checkpoint_dir=tmp_path, checkpoint_every=4)
    resumed = build()
    sparse24.sparsify(resumed)
    sparse24.finetune(resumed, data, **options, checkpoint_dir=tmp_path, checkpoint_every=4, resume=True)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_perplexity_on_cuda_matches_cpu():
    """sparse24.evaluate.perplexity on the GPU (the `sparse24 perplexity --device auto` path) gives the CPU's figure."""
    transformers = pytest.importorskip("transformers")
    from sparse24.evaluate import perplexity

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    model = transformers.LlamaForCausalLM(config).eval()
    sparse24.sparsify(model, "magnitude")
    tokens = torch.randint(0, 256, (8 * 64 + 5,))
    on_cpu = perplexity(model, tokens, seq_len=64)
    on_gpu = perplexity(model.cuda(), tokens, seq_len=64)
    assert (on_gpu.windows, on_gpu.tokens) == (8, 512)
    assert on_gpu.perplexity == pytest.approx(on_cpu.perplexity, rel=1e-3)
