from pathlib import Path

import pytest
import torch

from colorize_core.model.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from colorize_core.model.models import ModelConfig, build_model


@pytest.mark.parametrize("arch", ["residual_encoder", "hypercolumn"])
def test_round_trip_gives_identical_outputs(tmp_path: Path, arch: str) -> None:
    torch.manual_seed(1)
    model = build_model(ModelConfig(arch=arch, image_size=32)).eval()  # type: ignore[arg-type]
    with torch.no_grad():  # move BN statistics off their defaults so they are tested too
        model.train()(torch.rand(4, 1, 32, 32))
    model.eval()
    path = tmp_path / "m.safetensors"
    model_id = save_checkpoint(path, model, meta={"step": 7})
    loaded = load_model(path)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.model_id == model_id and model_id.startswith(arch)
    assert loaded.config == model.config
    assert load_checkpoint(path).meta == {"step": 7}


def test_model_id_follows_the_weights(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = build_model(ModelConfig(image_size=32))
    a = save_checkpoint(tmp_path / "a.safetensors", model)
    assert save_checkpoint(tmp_path / "b.safetensors", model) == a
    with torch.no_grad():
        model.head.bias.add_(1e-3)
    assert save_checkpoint(tmp_path / "c.safetensors", model) != a


def test_optimizer_state_round_trips(tmp_path: Path) -> None:
    model = build_model(ModelConfig(image_size=32))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    model(torch.rand(2, 1, 32, 32)).mean().backward()
    opt.step()
    save_checkpoint(tmp_path / "m.safetensors", model, optimizer=opt)
    state = load_checkpoint(tmp_path / "m.safetensors").optim_state
    assert state is not None
    fresh = torch.optim.Adam(params, lr=1e-3)
    fresh.load_state_dict(state)
    for pid, entries in opt.state_dict()["state"].items():
        for key, value in entries.items():
            assert torch.equal(fresh.state_dict()["state"][pid][key], value)


def test_missing_truncated_foreign_and_tampered_files(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    data = tiny_checkpoint.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(cut)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tiny)
    pth = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(3)}, pth)
    with pytest.raises(CheckpointError, match="not a"):
        load_checkpoint(pth)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    with pytest.raises(CheckpointError, match="foreign"):
        load_checkpoint(foreign)
    tampered = tmp_path / "tampered.safetensors"
    blob = bytearray(data)
    blob[-1] ^= 0xFF  # flip bits in the last weight
    tampered.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tampered)


def test_failed_save_leaves_the_old_file_intact(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "m.safetensors"
    target.write_bytes(tiny_checkpoint.read_bytes())
    model = build_model(ModelConfig(image_size=32))

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("colorize_core.storage.stores.os.replace", boom)
    with pytest.raises(OSError):
        save_checkpoint(target, model)
    assert target.read_bytes() == tiny_checkpoint.read_bytes()
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["m.safetensors"]  # no temporary file left


def test_model_id_from_the_header_alone(store_uri: str, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from colorize_core.model.checkpoint import read_model_id
    from colorize_core.storage.stores import open_store, split_uri

    uri = store_uri.rstrip("/") + "/models/m.safetensors"
    data = tiny_checkpoint.read_bytes()
    open_store(store_uri).write("models/m.safetensors", data)
    store_type = type(split_uri(uri)[0])
    fetched: list[int] = []
    original = store_type.read_range

    def counting(self, key: str, start: int, length: int) -> bytes:  # type: ignore[no-untyped-def]
        out = original(self, key, start, length)
        fetched.append(len(out))
        return out

    expected = load_checkpoint(tiny_checkpoint).model_id
    monkeypatch.setattr(store_type, "read_range", counting)
    assert read_model_id(uri) == expected
    assert len(fetched) == 2 and sum(fetched) < len(data) // 10  # the header, not the weights
    with pytest.raises(CheckpointError, match="not found"):
        read_model_id(store_uri.rstrip("/") + "/models/missing.safetensors")
    open_store(store_uri).write("models/foreign.safetensors", b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(CheckpointError, match="not an archive-colorizer checkpoint"):
        read_model_id(store_uri.rstrip("/") + "/models/foreign.safetensors")
    open_store(store_uri).write("models/short.safetensors", b"\x01")
    with pytest.raises(CheckpointError, match="truncated"):
        read_model_id(store_uri.rstrip("/") + "/models/short.safetensors")
