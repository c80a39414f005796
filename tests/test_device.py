import numpy as np
import pytest
import torch

from course_lib import device as dev


def test_cpu_override(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    monkeypatch.setattr(dev, "_ANNOUNCED", set())
    assert dev.get_device() == torch.device("cpu")
    assert "computing on cpu" in capsys.readouterr().out
    dev.get_device()
    assert capsys.readouterr().out == ""  # printed once per process


def test_unknown_device_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'; choose one of"):
        dev.get_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(ValueError, match="not available"):
        dev.get_device()


def test_auto_choice_follows_the_order(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.setattr(dev, "_available", lambda kind: kind in ("cpu", "mps"))
    assert dev.get_device(verbose=False).type == "mps"
    monkeypatch.setattr(dev, "_available", lambda kind: True)
    assert dev.get_device(verbose=False).type == "cuda"
    monkeypatch.setattr(dev, "_available", lambda kind: kind == "cpu")
    assert dev.get_device(verbose=False).type == "cpu"


def test_set_seed_reproduces_all_generators():
    dev.set_seed(7)
    a = (np.random.rand(3), torch.rand(3))
    dev.set_seed(7)
    b = (np.random.rand(3), torch.rand(3))
    np.testing.assert_array_equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    with pytest.raises(ValueError):
        dev.set_seed(-1)


def test_environment_report_has_versions():
    report = dev.environment_report(torch.device("cpu"))
    assert report["torch"] == torch.__version__
    assert report["device"] == "cpu"
