import functools
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import vgg16

from colorize_core.model import backbone
from colorize_core.model.backbone import BackboneWeightsError, VGG16Taps, imagenet_weights_path


@pytest.fixture(scope="module")
def vgg_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return vgg16(weights=None).state_dict()


@pytest.mark.slow  # seconds of work: `make test`, not test-fast
def test_torchvision_state_dict_file_loads(tmp_path: Path, vgg_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "vgg16.pth"
    torch.save(vgg_state, path)
    taps = VGG16Taps(weights=path)
    assert torch.equal(taps.features[21].weight, vgg_state["features.21.weight"])  # conv4_3
    assert torch.equal(taps.features[0].bias, vgg_state["features.0.bias"])


def test_safetensors_features_only_file_loads(tmp_path: Path, vgg_state: dict[str, torch.Tensor]) -> None:
    feats = {k.removeprefix("features."): v.contiguous() for k, v in vgg_state.items() if k.startswith("features.")}
    path = tmp_path / "vgg16.safetensors"
    save_file(feats, str(path))
    assert torch.equal(VGG16Taps(weights=path).features[10].weight, vgg_state["features.10.weight"])


@pytest.fixture
def weights_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over a folder: the download path, exercised as it runs online."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket closes


def test_imagenet_offline_says_what_to_do_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    url = f"http://127.0.0.1:{_closed_port()}/vgg16-397923af.pth"
    monkeypatch.setattr(backbone, "IMAGENET_URL", url)
    expected = tmp_path / "torch-home" / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert imagenet_weights_path() == expected
    with pytest.raises(BackboneWeightsError) as err:
        VGG16Taps(weights="imagenet")
    msg = str(err.value)
    assert "\n" not in msg
    assert str(expected) in msg and url in msg and "--backbone-weights FILE" in msg and "--backbone-weights none" in msg
    assert not expected.exists() and not list(expected.parent.glob("*.partial"))


@pytest.mark.slow  # seconds of work: `make test`, not test-fast
def test_imagenet_weights_download_into_torchvision_cache_with_hash_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vgg_state: dict[str, torch.Tensor], weights_server: tuple[str, Path]
) -> None:
    base, root = weights_server
    blob = tmp_path / "blob.pth"
    torch.save(vgg_state, blob)
    name = f"vgg16-{hashlib.sha256(blob.read_bytes()).hexdigest()[:8]}.pth"  # torchvision's naming
    (root / name).write_bytes(blob.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(backbone, "IMAGENET_URL", f"{base}/{name}")
    taps = VGG16Taps(weights="imagenet")
    assert torch.equal(taps.features[21].weight, vgg_state["features.21.weight"])
    assert imagenet_weights_path().is_file() and imagenet_weights_path().name == name
    (root / name).unlink()  # a second model reads the cache, not the network
    assert torch.equal(VGG16Taps(weights="imagenet").features[0].bias, vgg_state["features.0.bias"])


@pytest.mark.slow  # seconds of work: `make test`, not test-fast
def test_imagenet_download_with_a_wrong_hash_is_refused_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vgg_state: dict[str, torch.Tensor], weights_server: tuple[str, Path]
) -> None:
    base, root = weights_server
    torch.save(vgg_state, root / "vgg16-00000000.pth")  # the name promises another file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(backbone, "IMAGENET_URL", f"{base}/vgg16-00000000.pth")
    with pytest.raises(BackboneWeightsError, match="hash"):
        VGG16Taps(weights="imagenet")
    assert not imagenet_weights_path().exists() and not list(imagenet_weights_path().parent.glob("*.partial"))


def test_imagenet_weights_in_the_cache_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vgg_state: dict[str, torch.Tensor]) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    imagenet_weights_path().parent.mkdir(parents=True)
    torch.save(vgg_state, imagenet_weights_path())
    assert torch.equal(VGG16Taps(weights="imagenet").features[2].weight, vgg_state["features.2.weight"])


def test_missing_and_foreign_weight_files_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(BackboneWeightsError, match="not found"):
        VGG16Taps(weights=tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"definitely not a state dict")
    with pytest.raises(BackboneWeightsError, match="cannot read"):
        VGG16Taps(weights=junk)
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(BackboneWeightsError, match="not a torchvision VGG16"):
        VGG16Taps(weights=other)


def test_pickled_code_is_never_run(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": Evil()}, path)
    with pytest.raises(BackboneWeightsError):
        VGG16Taps(weights=path)


@pytest.mark.slow  # seconds of work: `make test`, not test-fast
def test_our_features_match_torchvision_layout(vgg_state: dict[str, torch.Tensor]) -> None:
    from colorize_core.model.backbone import vgg16_features

    ours = vgg16_features()
    theirs = vgg16(weights=None).features[:23]
    assert [type(m) for m in ours] == [type(m) for m in theirs]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
