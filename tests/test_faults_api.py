"""APIs that refuse what PyTorch refuses and get right what PyTorch gets right: optimizers given one tensor or
a parameter twice, clip_grad_norm_ given one tensor, hooks that change a gradient's shape or type, a float64
gradient for a float32 tensor, in-place products with a tensor that requires grad; and the data loader's
and layers' arguments checked when they are given."""
import numpy as np
import pytest

import minivgg as mv
from minivgg import data, models, nn, optim


def _param(values):
    return nn.Parameter(mv.Tensor(np.asarray(values, dtype=np.float32)))


# ---- 10. optimizers and clip_grad_norm_ ------------------------------------------------------------------------
@pytest.mark.parametrize("make", [optim.SGD, optim.Adam])
def test_an_optimizer_given_one_parameter_is_a_type_error(make):
    p = _param([1.0, 2.0])
    with pytest.raises(TypeError, match="params argument given to the optimizer should be an iterable of "
                                        "Tensors or dicts, but got a single Parameter"):
        make(p, lr=0.1)


def test_an_optimizer_refuses_a_parameter_given_twice_and_what_is_no_tensor():
    p, q = _param([1.0]), _param([2.0])
    with pytest.raises(ValueError, match="a parameter appears twice in the list"):
        optim.SGD([p, q, p], lr=0.1)
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors, but one of the params is float"):
        optim.SGD([p, 1.0], lr=0.1)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(TypeError, match="should be an iterable of Tensors or dicts, but got int"):
        optim.SGD(3, lr=0.1)


def test_clip_grad_norm_takes_one_tensor_as_pytorch_does():
    p = _param([6.0, 8.0])
    p.grad = mv.Tensor(np.array([6.0, 8.0], dtype=np.float32))
    total = nn.utils.clip_grad_norm_(p, 1.0)
    assert total == pytest.approx(10.0)
    np.testing.assert_allclose(p.grad.data, [0.6, 0.8], rtol=1e-5)


def test_against_pytorch():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.tensor([6.0, 8.0]))
    p.grad = torch.tensor([6.0, 8.0])
    assert float(torch.nn.utils.clip_grad_norm_(p, 1.0)) == pytest.approx(10.0)
    with pytest.raises(TypeError, match="params argument given to the optimizer should be an iterable"):
        torch.optim.SGD(p, lr=0.1)


# ---- 10. hooks, backward's gradient, in-place products ---------------------------------------------------------
def test_a_hook_that_changes_the_gradients_shape_or_type_is_refused():
    x = mv.Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    handle = x.register_hook(lambda g: mv.Tensor(np.ones(2, dtype=np.float32)))
    with pytest.raises(RuntimeError, match="has changed the size of value: it returned shape \\[2\\], the "
                                           "gradient has shape \\[3\\]"):
        (x * 2).sum().backward()
    handle.remove()
    x.register_hook(lambda g: mv.Tensor(g.data.astype(np.float64)))
    with pytest.raises(RuntimeError, match="has changed the type of value"):
        (x * 2).sum().backward()


def test_a_float64_gradient_for_a_float32_leaf_is_cast():
    x = mv.Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    x.backward(mv.Tensor(np.full(3, 2.0)))  # float64
    assert x.grad.dtype == np.float32 and x.grad.data.tolist() == [2.0, 2.0, 2.0]
    y = mv.Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    (y * 3).backward(np.ones(3))
    assert y.grad.dtype == np.float32


@pytest.mark.parametrize("op", ["mul_", "div_"])
def test_an_in_place_product_with_a_tensor_that_requires_grad(op):
    torch = pytest.importorskip("torch")
    values = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    others = np.array([2.0, 4.0, -0.5], dtype=np.float32)
    grads = []
    for lib, make in ((mv, lambda v: mv.Tensor(v.copy(), requires_grad=True)),
                      (torch, lambda v: torch.tensor(v.copy(), requires_grad=True))):
        x, z = make(values), make(others)
        y = x * 1
        getattr(y, op)(z)
        (y * y).sum().backward()
        grads.append([np.asarray(t.grad.data if lib is mv else t.grad.numpy()) for t in (x, z)])
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


# ---- 11. the data loader's and the layers' arguments ------------------------------------------------------------
def test_float_images_in_0_1_are_taken_as_they_are():
    images = np.linspace(0, 1, 4 * 9, dtype=np.float32).reshape(4, 3, 3)
    batch, _ = next(iter(data.DataLoader((images, np.arange(4)), 4)))
    np.testing.assert_array_equal(batch.data[:, 0], images)
    as_bytes = (images * 255).round().astype(np.uint8)
    batch, _ = next(iter(data.DataLoader((as_bytes, np.arange(4)), 4)))
    np.testing.assert_allclose(batch.data[:, 0], images, atol=1 / 255)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(resize=0), ValueError, "resize must be a positive int, got 0"),
    (dict(resize=-3), ValueError, "resize must be a positive int, got -3"),
    (dict(resize=2.5), TypeError, "resize must be a positive int, got 2.5"),
    (dict(seed=-1), ValueError, "seed must be a non-negative int, got -1"),
    (dict(limit_batches=0), ValueError, "limit_batches must be a positive int, got 0"),
    (dict(limit_batches=-1), ValueError, "limit_batches must be a positive int, got -1"),
    (dict(normalize=(0.5, 0)), ValueError, "normalize's std must be a number > 0, got 0"),
])
def test_the_loaders_arguments_are_checked_when_given(kwargs, error, words):
    images = np.zeros((4, 3, 3), dtype=np.uint8)
    with pytest.raises(error, match=f"DataLoader: {words}".replace("(", "\\(").replace(")", "\\)")):
        data.DataLoader((images, np.arange(4)), 2, **kwargs)


def test_labels_are_never_truncated():
    images = np.zeros((3, 2, 2), dtype=np.uint8)
    with pytest.raises(ValueError, match="labels must be class indices \\(whole numbers\\), got float64"):
        data.DataLoader((images, np.array([0.0, 1.5, 2.0])), 2)
    assert data.DataLoader((images, np.array([0.0, 1.0, 2.0])), 2).labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize("make, error, words", [
    (lambda: nn.Conv2d(1, 2, 3, bias="no"), TypeError, "Conv2d: bias must be True or False, got 'no'"),
    (lambda: nn.Linear(2, 2, bias="no"), TypeError, "Linear: bias must be True or False, got 'no'"),
    (lambda: nn.LazyConv2d(2, 3, bias=None), TypeError, "LazyConv2d: bias must be True or False, got None"),
    (lambda: models.vgg([]), ValueError, "vgg: conv_arch must be a non-empty list of pairs"),
    (lambda: nn.LocalResponseNorm(5, alpha=-1), ValueError, "LocalResponseNorm: alpha must be a number >= 0"),
    (lambda: nn.LocalResponseNorm(5, k=0), ValueError, "LocalResponseNorm: k must be a number > 0"),
])
def test_layers_refuse_what_cannot_work(make, error, words):
    with pytest.raises(error, match=words):
        make()


# ---- 12. --torchvision-weights: a damaged .npz, a .pth that is no state dict --------------------------------------
def _vgg11():
    return models.vgg_from_config("A", ratio=64)


def test_a_truncated_npz_of_weights_is_one_line(tmp_path):
    path = tmp_path / "vgg11.npz"
    np.savez(path, **{"features.0.weight": np.zeros((64, 3, 3, 3), dtype=np.float32)})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=f"load_torchvision_weights: {path} is not a complete .npz of weights "
                                         ".*convert torchvision's .pth to .npz again"):
        models.load_torchvision_weights(_vgg11(), str(path))


def test_a_pth_that_is_no_state_dict_gets_no_advice_to_run_its_code(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pth"
    torch.save({"args": __import__("argparse").Namespace(lr=0.1)}, path)  # weights_only refuses it
    with pytest.raises(ValueError) as info:
        models.load_torchvision_weights(_vgg11(), str(path))
    message = str(info.value)
    assert message.startswith(f"load_torchvision_weights: {path} is not a file of weights PyTorch reads without "
                              "running code from it (UnpicklingError)")
    assert "weights_only" not in message and "\n" not in message


def test_the_cli_names_a_damaged_weights_file(tmp_path):
    import subprocess
    import sys

    pytest.importorskip("PIL.Image")
    from PIL import Image

    for c, name in enumerate(["cats", "dogs"]):
        (tmp_path / "images" / name).mkdir(parents=True)
        Image.fromarray(np.full((8, 8), 40 * c, dtype=np.uint8)).save(tmp_path / "images" / name / "0.png")
        Image.fromarray(np.full((8, 8), 40 * c + 1, dtype=np.uint8)).save(tmp_path / "images" / name / "1.png")
    (tmp_path / "vgg11.npz").write_bytes(b"PK\x03\x04 cut short")
    result = subprocess.run([sys.executable, "-m", "minivgg", "train", "--data-dir", "images", "--arch", "vgg11",
                             "--torchvision-weights", "vgg11.npz", "--out", "run", "--epochs", "1", "--no-progress"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "minivgg train: error: load_torchvision_weights: vgg11.npz is not a complete .npz of weights"), lines
    assert not (tmp_path / "run").exists()
