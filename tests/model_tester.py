"""``ModelTesterMixin``: the checks every pixelfold model class passes (as diffusers' tester
mixin does for its models), run over tiny configs of that class.

A test class for a model inherits the mixin and declares the model and how to feed it::

    class TestGenerator(ModelTesterMixin):
        model_class = Generator
        configs = {"pixelfolder-tiny-32": lambda: presets.get("pixelfolder-tiny-32")}
        compile_config = "pixelfolder-tiny-32"

        def make_inputs(self, model, batch_size, gen):
            return (torch.randn(batch_size, model.z_dim, generator=gen),), {}

Every test that takes a ``config`` argument then runs once per entry of ``configs``: a preset
or a spec added there is tested the moment it is added.

The mixin lives with the tests, not in ``pixelfold.layers.testing``: it is made of pytest
fixtures (``tmp_path``, ``monkeypatch``) and pytest is no dependency of the package; and a
user's own model is a spec of these two classes (the spec is the model), which an entry in
``configs`` covers, not a new class.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from pixelfold.layers.testing import trained_like
from pixelfold.utils import CheckpointError

PINNED_KEYS = Path(__file__).parent / "pinned" / "state_dict_keys.json"
"""Sorted ``"name shape"`` of every tensor of each tiny config's state dict, by
``"Class/config"``. Rewrite it after a deliberate change of keys with
``PIXELFOLD_UPDATE_PINNED_KEYS=1 python -m pytest tests/test_model_common.py -k pinned``."""

Inputs = tuple[tuple[Any, ...], dict[str, Any]]


def state_dict_signature(model: nn.Module) -> list[str]:
    """Every tensor of ``model.state_dict()`` as ``"name (shape)"``, sorted."""
    return sorted(f"{k} {tuple(v.shape)}" for k, v in model.state_dict().items())


def _rewrite(path: Path, transform: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Load the safetensors file ``path``, let ``transform`` change its tensors, write it back."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    transform(state)
    save_file(state, str(path), metadata={"format": "pt"})


class ModelTesterMixin:
    """The shared checks of a model class: save/load round trip, strict loading, atomic saves,
    determinism, output shapes, gradients, memory formats, pinned state-dict keys and
    ``torch.compile``.

    Subclasses set ``model_class``, ``configs`` (name -> zero-argument function returning a
    spec) and ``compile_config`` (the tiniest config: compiled once per class, and the one of
    the tests that need a single config), and implement
    ``make_inputs``, ``output_shape``; ``forward`` runs the model deterministically unless
    told otherwise.
    """

    model_class: ClassVar[type[nn.Module]]
    configs: ClassVar[dict[str, Callable[[], Any]]]
    compile_config: ClassVar[str]
    batch_sizes: ClassVar[tuple[int, ...]] = (0, 1, 2, 4)
    #: whether each output sample depends on its own input only (not so under a
    #: discriminator's minibatch standard deviation)
    batch_independent: ClassVar[bool] = True
    #: absolute tolerance of outputs that are computed in another way (compiled, another
    #: memory format)
    atol: ClassVar[float] = 1e-5

    # ------------------------------------------------------------ what a subclass provides

    def make_inputs(self, model: nn.Module, batch_size: int, gen: torch.Generator) -> Inputs:
        """The positional and keyword arguments of one forward call (float32, CPU)."""
        raise NotImplementedError

    def output_shape(self, model: nn.Module, batch_size: int) -> tuple[int, ...]:
        """The shape of the output for ``batch_size`` samples."""
        raise NotImplementedError

    def forward(self, model: nn.Module, inputs: Inputs, *, deterministic: bool = True
                ) -> torch.Tensor:
        """``model(*args, **kwargs)``; ``deterministic=False`` for a model with a random mode
        (the generator's noise) runs it in that mode."""
        args, kwargs = inputs
        return model(*args, **kwargs)

    # ------------------------------------------------------------ helpers

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Run every test that takes ``config`` once per entry of ``configs``."""
        if "config" in metafunc.fixturenames:
            metafunc.parametrize("config", sorted(self.configs))

    def build(self, config: str, seed: int = 0, **kwargs: Any) -> nn.Module:
        """The model of ``config`` initialized from ``seed``, its zero-initialized parameters
        given values as training would (so that every term counts), in eval mode."""
        torch.manual_seed(seed)
        model = self.model_class(self.configs[config](), **kwargs)
        return trained_like(model, seed=seed).eval()

    def inputs(self, model: nn.Module, batch_size: int = 2, seed: int = 0) -> Inputs:
        return self.make_inputs(model, batch_size, torch.Generator().manual_seed(seed))

    def saved(self, config: str, folder: Path) -> tuple[nn.Module, Path]:
        model = self.build(config)
        return model, model.save_pretrained(folder)  # type: ignore[operator]

    # ------------------------------------------------------------ save / load

    def test_save_load_round_trip_gives_identical_outputs(self, config, tmp_path):
        model, folder = self.saved(config, tmp_path / "model")
        loaded = self.model_class.from_pretrained(folder).eval()  # type: ignore[attr-defined]
        assert type(loaded) is self.model_class
        assert loaded.spec == model.spec
        assert state_dict_signature(loaded) == state_dict_signature(model)
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
        inputs = self.inputs(model)
        assert torch.equal(self.forward(loaded, inputs), self.forward(model, inputs))

    def test_loading_refuses_a_missing_key(self, config, tmp_path):
        model, folder = self.saved(config, tmp_path / "model")
        key = sorted(model.state_dict())[-1]
        _rewrite(folder / "model.safetensors", lambda state: state.pop(key))
        with pytest.raises(CheckpointError, match=rf"missing 1 tensor\(s\): {re.escape(key)}"):
            self.model_class.from_pretrained(folder)  # type: ignore[attr-defined]

    def test_loading_refuses_an_unexpected_key(self, config, tmp_path):
        _, folder = self.saved(config, tmp_path / "model")
        key = "stray.weight"
        _rewrite(folder / "model.safetensors", lambda state: state.update({key: torch.ones(2)}))
        with pytest.raises(CheckpointError, match=rf"unexpected 1 tensor\(s\): {key}"):
            self.model_class.from_pretrained(folder)  # type: ignore[attr-defined]

    def test_loading_refuses_a_wrong_shape(self, config, tmp_path):
        model, folder = self.saved(config, tmp_path / "model")
        key, value = next((k, v) for k, v in sorted(model.state_dict().items()) if v.ndim)
        wrong = (value.shape[0] + 1, *value.shape[1:])

        def reshape(state: dict[str, torch.Tensor]) -> None:
            state[key] = torch.zeros(wrong)

        _rewrite(folder / "model.safetensors", reshape)
        with pytest.raises(CheckpointError, match=rf"shape mismatch: {re.escape(key)}: "
                                                  rf"{re.escape(str(wrong))} in "):
            self.model_class.from_pretrained(folder)  # type: ignore[attr-defined]

    @pytest.mark.parametrize("interrupt", [OSError("disk full"), KeyboardInterrupt()],
                             ids=["error", "ctrl-c"])
    def test_interrupted_save_keeps_the_previous_folder(self, tmp_path, monkeypatch, interrupt):
        import safetensors.torch

        config = self.compile_config
        model, folder = self.saved(config, tmp_path / "model")
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        real_save = safetensors.torch.save_file

        def half_then_fail(state, filename, metadata=None):
            real_save(state, filename, metadata=metadata)
            data = Path(filename).read_bytes()
            Path(filename).write_bytes(data[:len(data) // 2])
            raise interrupt

        monkeypatch.setattr(safetensors.torch, "save_file", half_then_fail)
        other = self.build(config, seed=1)
        with pytest.raises(type(interrupt)):
            other.save_pretrained(folder)  # type: ignore[operator]
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
        assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no partial folder beside it
        # and a first save that fails leaves nothing
        with pytest.raises(type(interrupt)):
            other.save_pretrained(tmp_path / "new")  # type: ignore[operator]
        assert [p.name for p in tmp_path.iterdir()] == ["model"]
        monkeypatch.undo()
        loaded = self.model_class.from_pretrained(folder).eval()  # type: ignore[attr-defined]
        inputs = self.inputs(model)
        assert torch.equal(self.forward(loaded, inputs), self.forward(model, inputs))

    def test_save_interrupted_between_the_two_renames_keeps_the_previous_folder(
            self, tmp_path, monkeypatch):
        """Where the kernel cannot exchange two folders, the old one is renamed aside before
        the new one takes its name: an interrupt between the two renames puts it back."""
        from pixelfold.utils import files

        model, folder = self.saved(self.compile_config, tmp_path / "model")
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        monkeypatch.setattr(files, "exchange_paths", lambda a, b: False)

        def interrupted() -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(files, "_between_renames", interrupted)
        with pytest.raises(KeyboardInterrupt):
            self.build(self.compile_config, seed=1).save_pretrained(folder)  # type: ignore[operator]
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
        assert [p.name for p in tmp_path.iterdir()] == ["model"]

    # ------------------------------------------------------------ determinism, shapes

    def test_same_seed_same_model_and_output(self, config):
        a, b = self.build(config, seed=3), self.build(config, seed=3)
        for key, value in a.state_dict().items():
            assert torch.equal(b.state_dict()[key], value), key
        inputs = self.inputs(a)
        outputs = []
        for model in (a, b):
            torch.manual_seed(7)
            outputs.append(self.forward(model.train(), inputs, deterministic=False))
        assert torch.equal(*outputs)
        c = self.build(config, seed=4)
        assert not torch.equal(self.forward(c, inputs), self.forward(a.eval(), inputs))

    def test_eval_forward_is_deterministic(self, config):
        model = self.build(config)
        inputs = self.inputs(model)
        first = self.forward(model, inputs)
        torch.manual_seed(123)  # another global random state changes nothing
        assert torch.equal(self.forward(model, inputs), first)

    def test_output_shapes(self, config):
        model = self.build(config)
        for batch_size in self.batch_sizes:
            out = self.forward(model, self.inputs(model, batch_size))
            assert out.shape == self.output_shape(model, batch_size), batch_size
            assert out.dtype == torch.float32 and torch.isfinite(out).all()

    def test_samples_do_not_depend_on_the_rest_of_the_batch(self, config):
        if not self.batch_independent:
            pytest.skip(f"{self.model_class.__name__} mixes the samples of a batch")
        model = self.build(config)
        (first, *rest), kwargs = self.inputs(model, 4)
        out = self.forward(model, ((first, *rest), kwargs))
        n = first.shape[0]  # per-sample keyword tensors (class labels) are cut with the batch
        half_kwargs = {k: v[:2] if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == n
                       else v for k, v in kwargs.items()}
        half = self.forward(model, ((first[:2], *rest), half_kwargs))
        torch.testing.assert_close(half, out[:2], rtol=1e-4, atol=1e-4)  # other conv shapes

    def test_backward_reaches_every_parameter(self, config):
        model = self.build(config).train()
        out = self.forward(model, self.inputs(model), deterministic=False)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        (out * weights).sum().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, f"no gradient for {name}"
            assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
            assert p.grad.any(), f"zero gradient for {name}"

    def test_memory_formats_agree(self, config):
        default = self.build(config)
        plain = self.build(config, memory_format=torch.contiguous_format)
        for key, value in default.state_dict().items():
            assert torch.equal(plain.state_dict()[key], value), key
        inputs = self.inputs(default)
        torch.testing.assert_close(self.forward(plain, inputs), self.forward(default, inputs),
                                   rtol=1e-5, atol=self.atol)

    def test_no_grad_and_inference_mode_follow_the_weights(self, config):
        """Without autograd a model may keep what does not depend on its inputs (the
        generator's style-free stage input): the output stays that of the model's current
        weights through ``load_state_dict``, in-place updates (an optimizer step) and
        conversions."""
        model, other = self.build(config), self.build(config, seed=1)
        inputs = self.inputs(model)
        expected = self.forward(model, inputs)
        for mode in (torch.no_grad, torch.inference_mode):
            with mode():
                assert torch.equal(self.forward(model, inputs), expected), mode.__name__
                assert torch.equal(self.forward(model, inputs), expected), mode.__name__
        with torch.no_grad():
            model.load_state_dict(other.state_dict())
            assert torch.equal(self.forward(model, inputs), self.forward(other, inputs))
            for m in (model, other):
                for p in m.parameters():
                    p.mul_(0.5)
            assert torch.equal(self.forward(model, inputs), self.forward(other, inputs))
            model.double()
            args = tuple(a.double() if isinstance(a, torch.Tensor) and a.is_floating_point()
                         else a for a in inputs[0])
            assert self.forward(model, (args, inputs[1])).dtype == torch.float64

    def test_flop_counter_runs_with_and_without_autograd(self, config):
        """PyTorch's FLOP counter (``torch.utils.flop_counter.FlopCounterMode``, module
        hooks that follow the autograd graph) counts the same with autograd, under
        ``torch.no_grad`` and under ``torch.inference_mode``, for a model that has not run
        yet (one that ran without autograd may have kept its style-free part)."""
        from torch.utils.flop_counter import FlopCounterMode

        totals = []
        for mode in (torch.enable_grad, torch.no_grad, torch.inference_mode):
            model = self.build(config)
            inputs = self.inputs(model)
            counter = FlopCounterMode(display=False)
            with mode(), counter:
                self.forward(model, inputs)
            totals.append(counter.get_total_flops())
        assert totals[0] > 0 and totals == [totals[0]] * 3, totals

    @pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
    def test_other_dtypes(self, config, dtype):
        """The model and its inputs converted to ``dtype`` run in ``dtype`` and agree with
        float32 (to its precision)."""
        model = self.build(config)
        inputs = self.inputs(model)
        expected = self.forward(model, inputs)
        (args, kwargs) = inputs
        args = tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point()
                     else a for a in args)
        out = self.forward(model.to(dtype), (args, kwargs))
        assert out.dtype == dtype
        if dtype == torch.float64:
            torch.testing.assert_close(out, expected.double(), rtol=1e-4, atol=1e-4)
        else:
            scale = expected.abs().max().item()
            err = (out.float() - expected).abs().max().item()
            assert err <= 0.1 * scale, f"bfloat16 off by {err:.3g} for outputs up to {scale:.3g}"

    # ------------------------------------------------------------ state-dict keys

    def test_state_dict_keys_are_pinned(self, config):
        """A refactor that renames, adds or reshapes a tensor breaks every saved checkpoint:
        this fails, naming the keys, until the change is deliberate and the pinned list is
        rewritten (see ``PINNED_KEYS``)."""
        from pixelfold.utils.files import atomic_write_text

        entry = f"{self.model_class.__name__}/{config}"
        current = state_dict_signature(self.build(config))
        pinned = json.loads(PINNED_KEYS.read_text()) if PINNED_KEYS.exists() else {}
        if os.environ.get("PIXELFOLD_UPDATE_PINNED_KEYS") == "1":
            pinned[entry] = current
            PINNED_KEYS.parent.mkdir(exist_ok=True)
            atomic_write_text(PINNED_KEYS, json.dumps(dict(sorted(pinned.items())), indent=1)
                              + "\n")
            pytest.skip(f"rewrote the pinned keys of {entry}")
        assert entry in pinned, f"{entry} has no pinned keys in {PINNED_KEYS.name}"
        gone = sorted(set(pinned[entry]) - set(current))
        new = sorted(set(current) - set(pinned[entry]))
        assert not gone and not new, f"{entry}: state-dict keys changed; gone: {gone}; new: {new}"

    # ------------------------------------------------------------ torch.compile

    def test_torch_compile_fullgraph(self):
        torch._dynamo.reset()
        model = self.build(self.compile_config)
        inputs = self.inputs(model)
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        torch.testing.assert_close(self.forward(compiled, inputs), self.forward(model, inputs),
                                   rtol=1e-5, atol=self.atol)
