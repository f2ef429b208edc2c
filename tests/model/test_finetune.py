"""Counterfactual fine-tuning on a tiny model: the loss reaches the denoiser, the classifiers travel with the
model, and the evaluator refuses them as oracles."""

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from synthfair.errors import ConfigError, SynthfairError
from synthfair.evaluate.independence import check_independence
from synthfair.evaluate.oracles import OracleConfig, Oracles, train_oracles
from synthfair.model import finetune
from synthfair.model.data import CacheDataset
from synthfair.model.diffusion import DiffusionModel
from synthfair.model.finetune import TuningConfig
from synthfair.model.train import train


@pytest.fixture(scope="module")
def classifiers(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("guides") / "classifiers"
    train_oracles(OracleConfig(covariates=("sex", "age", "findings"), epochs=1, batch_size=4), cache, out)
    return out


def test_interventions_change_one_covariate_to_another_valid_value(cache, classifiers):
    guides = Oracles.load(classifiers)
    data = CacheDataset(cache)
    records = [data.covariates(i) for i in range(len(data))]
    changes = finetune.interventions(records, guides, (20.0, 90.0), torch.Generator().manual_seed(0))
    assert len(changes) == len(records) and {name for name, _ in changes} <= {"sex", "age", "findings"}
    for record, (name, value) in zip(records, changes, strict=True):
        changed = finetune.apply(record, (name, value))
        if name == "sex":
            assert value != record["sex"] and changed["sex"] == value
        elif name == "age":
            assert 20.0 <= value <= 90.0
        else:
            label, flag = value
            assert flag == 1 - (record["findings"].get(label) or 0) and changed["findings"][label] == flag


def test_tuning_loss_reaches_the_denoiser(trained_run, cache, classifiers):
    model = DiffusionModel.load(trained_run / "model")
    guides = Oracles.load(classifiers)
    for oracle in guides:
        oracle.net.requires_grad_(False)
    images, records = CacheDataset(cache).batch(list(range(6)))
    changes = finetune.interventions(records, guides, (20.0, 90.0), torch.Generator().manual_seed(1))
    t = torch.full((6,), 200)
    xt = model.scheduler.add_noise(images * 2 - 1, torch.randn(images.shape), t)
    cond = finetune.encode_changed(model.encoder, records, changes)
    eps = model.unet(xt, t, encoder_hidden_states=None, class_labels=cond).sample
    x_cf = finetune.one_step_counterfactual(eps, xt, model.scheduler.alphas_cumprod[t])
    loss = finetune.tuning_loss(x_cf, images, changes, guides)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    grads = [p.grad for p in model.unet.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for o in guides for p in o.net.parameters())  # the classifiers stay frozen


def test_fine_tuning_run_carries_its_classifiers_and_they_cannot_judge_it(
    trained_run, cache, classifiers, tiny_config, tmp_path
):
    config = dataclasses.replace(
        tiny_config, init_from=str(trained_run), tuning=TuningConfig(classifiers=str(classifiers), weight=0.5)
    )
    train(config, cache, tmp_path / "tuned")
    model_dir = tmp_path / "tuned" / "model"
    before = DiffusionModel.load(trained_run / "model").unet.state_dict()
    after = DiffusionModel.load(model_dir).unet.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (model_dir / "guidance" / "classifiers" / "subjects.npy").is_file()
    with pytest.raises(SynthfairError, match="guidance classifier"):
        check_independence(Oracles.load(classifiers), model_dir)
    other = dataclasses.replace(config, model=dataclasses.replace(config.model, layers_per_block=2))
    with pytest.raises(ConfigError, match="init_from"):
        train(other, cache, tmp_path / "mismatch")
    assert np.isfinite(float((tmp_path / "tuned" / "loss.csv").read_text().splitlines()[-1].split(",")[1]))


def test_hvae_fine_tuning_scores_its_real_counterfactuals(cache, classifiers, tmp_path):
    """An HVAE's counterfactual fine-tuning differentiates through abduction and decoding; the run carries
    its classifiers, which the evaluator then refuses as oracles."""
    from conftest import TINY_HVAE
    from synthfair.model.hvae import WEIGHTS, HVAEConfig, HVAEModel
    from synthfair.model.train import TrainConfig

    model = HVAEModel.create(HVAEConfig(**TINY_HVAE), seed=0)
    guides = Oracles.load(classifiers)
    for oracle in guides:
        oracle.net.requires_grad_(False)
    images, records = CacheDataset(cache).batch(list(range(6)))
    changes = finetune.interventions(records, guides, (20.0, 90.0), torch.Generator().manual_seed(1))
    cond, cond_cf = model.encoder.encode(records), finetune.encode_changed(model.encoder, records, changes)
    out = model.net(images * 2 - 1, cond, torch.Generator().manual_seed(2), cond_cf)
    finetune.tuning_loss((out["counterfactual"] + 1) / 2, images, changes, guides).backward()
    moved = {
        name.split(".")[0] for name, p in model.net.named_parameters() if p.grad is not None and p.grad.any()
    }
    assert {"encoder", "decoder", "embed"} <= moved  # abduction and the generative path both learn

    base = TrainConfig(
        hvae=HVAEConfig(**TINY_HVAE), steps=2, batch_size=4, checkpoint_every=2, cond_dropout=0.0
    )
    runs = {}
    for weight in (0.0, 1.0):  # the same draws (interventions, latents): only the classifiers' loss differs
        tuned = dataclasses.replace(base, tuning=TuningConfig(classifiers=str(classifiers), weight=weight))
        train(tuned, cache, tmp_path / f"tuned-{weight}")
        runs[weight] = load_file(tmp_path / f"tuned-{weight}" / "model" / WEIGHTS)
    assert any(not torch.equal(runs[0.0][k], runs[1.0][k]) for k in runs[0.0])
    with pytest.raises(SynthfairError, match="guidance classifier"):
        check_independence(guides, tmp_path / "tuned-1.0" / "model")


def test_the_elbo_constraint_multiplier_grows_while_violated_and_never_below_zero():
    multiplier = finetune.Multiplier(target=3.0)
    nelbo = torch.tensor(3.5, requires_grad=True)
    multiplier.penalty(nelbo, damping=10.0).backward()
    assert nelbo.grad.item() == pytest.approx(0.0 + 10.0 * 0.5)  # lambda + damping x v; v's factor is held
    multiplier.step(3.5, lr=2.0)
    assert multiplier.value == 1.0
    multiplier.step(1.0, lr=2.0)
    assert multiplier.value == 0.0
    with pytest.raises(SynthfairError, match="violation is nan"):
        multiplier.step(float("nan"), lr=1.0)
    with pytest.raises(ConfigError, match="elbo_target -1"):
        TuningConfig(classifiers="guides", elbo_target=-1.0)
    with pytest.raises(ConfigError, match="elbo_target .or elbo_margin. without tuning.classifiers"):
        TuningConfig(elbo_target=3.0)
    with pytest.raises(ConfigError, match="both elbo_target 3.0 and elbo_margin 0.01"):
        TuningConfig(classifiers="guides", elbo_target=3.0, elbo_margin=0.01)
    with pytest.raises(ConfigError, match="elbo_margin -0.1 is negative"):
        TuningConfig(classifiers="guides", elbo_margin=-0.1)
    with pytest.raises(ConfigError, match="lagrange_lr -1"):
        TuningConfig(lagrange_lr=-1.0)


def test_hvae_fine_tuning_under_an_elbo_constraint_resumes_exactly(cache, classifiers, tmp_path):
    """The multiplier moves while the ELBO is above its target, travels in the checkpoints (resume is exact)
    and a bad multiplier file is refused; a diffusion model has no ELBO to constrain."""
    import json

    from conftest import TINY_HVAE
    from synthfair.model.hvae import WEIGHTS, HVAEConfig
    from synthfair.model.train import MULTIPLIER_FILE, TrainConfig, checkpoints

    tuning = TuningConfig(classifiers=str(classifiers), weight=1.0, elbo_target=1.0, lagrange_lr=0.1)
    hvae = HVAEConfig(**TINY_HVAE)
    config = TrainConfig(hvae=hvae, steps=4, batch_size=4, checkpoint_every=2, cond_dropout=0, tuning=tuning)
    whole = train(config, cache, tmp_path / "whole")
    assert whole.multiplier > 0 and whole.elbo_target == 1.0  # an untrained HVAE is far above 1 nat/pixel
    train(config, cache, tmp_path / "parts", stop_at=2)
    saved = json.loads((checkpoints(tmp_path / "parts")[-1] / MULTIPLIER_FILE).read_text())
    assert 0 < saved["lagrange_multiplier"] < whole.multiplier
    parts = train(config, cache, tmp_path / "parts", resume="latest")
    assert parts.multiplier == whole.multiplier
    weights = [load_file(tmp_path / run / "model" / WEIGHTS) for run in ("whole", "parts")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

    train(config, cache, tmp_path / "bad", stop_at=2)
    (checkpoints(tmp_path / "bad")[-1] / MULTIPLIER_FILE).write_text(
        '{"lagrange_multiplier": -3, "elbo_target": 1.0}'
    )
    with pytest.raises(SynthfairError, match=r"multiplier.json: lagrange_multiplier -3 is not a finite"):
        train(config, cache, tmp_path / "bad", resume="latest")
    with pytest.raises(ConfigError, match="elbo_target .or elbo_margin. constrains an HVAE's ELBO"):
        TrainConfig(tuning=tuning)
    margin = dataclasses.replace(tuning, elbo_target=None, elbo_margin=0.01)
    with pytest.raises(ConfigError, match="elbo_margin 0.01 is a margin over the starting model's ELBO"):
        dataclasses.replace(config, tuning=margin)


def test_an_elbo_margin_holds_the_starting_models_own_elbo(cache, classifiers, tmp_path):
    """``elbo_margin``: the target is measured once, before any update, on the run's first batches, and kept
    in the checkpoints (a resumed run does not measure again)."""
    import json

    from conftest import TINY_HVAE
    from synthfair.model.hvae import WEIGHTS, HVAEConfig
    from synthfair.model.train import MULTIPLIER_FILE, TrainConfig, checkpoints

    hvae = HVAEConfig(**TINY_HVAE)
    base = TrainConfig(hvae=hvae, steps=2, batch_size=4, checkpoint_every=2, cond_dropout=0)
    train(base, cache, tmp_path / "base")
    tuning = TuningConfig(classifiers=str(classifiers), weight=1.0, elbo_margin=0.25)
    config = dataclasses.replace(base, steps=4, init_from=str(tmp_path / "base"), tuning=tuning)
    whole = train(config, cache, tmp_path / "whole")
    train(config, cache, tmp_path / "parts", stop_at=2)
    saved = json.loads((checkpoints(tmp_path / "parts")[-1] / MULTIPLIER_FILE).read_text())
    assert saved["elbo_target"] == whole.elbo_target
    parts = train(config, cache, tmp_path / "parts", resume="latest")
    assert (parts.elbo_target, parts.multiplier) == (whole.elbo_target, whole.multiplier)
    weights = [load_file(tmp_path / run / "model" / WEIGHTS) for run in ("whole", "parts")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # the target is the starting model's negative ELBO (on the same batches and draws) plus the margin
    lower = dataclasses.replace(tuning, elbo_margin=0.0)
    start = train(dataclasses.replace(config, tuning=lower, steps=1), cache, tmp_path / "zero")
    assert whole.elbo_target == pytest.approx(start.elbo_target + 0.25)
    assert 0.5 < start.elbo_target < 20  # nats per pixel of a barely trained HVAE
