import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import TINY_HVAE
from synthfair.config import read_yaml
from synthfair.errors import ConfigError, SynthfairError
from synthfair.model.hvae import MODEL_FILE, WEIGHTS, HVAEConfig, HVAEModel
from synthfair.taxonomy import Taxonomy, load_taxonomy

TINY = HVAEConfig(**TINY_HVAE)
RECORDS = [
    {"age": 60.0, "sex": "female", "race": "white", "view": "PA", "source": "mimic"},
    {"age": 35.0, "sex": "male", "race": "black", "view": "AP", "findings": {"cardiomegaly": 1}},
    {"age": 80.0, "sex": "female", "device": "ge", "source": "chexpert"},
    {"age": 20.0, "sex": "male", "race": "asian", "view": "PA", "findings": {"pleural_effusion": 0}},
]


def _images() -> torch.Tensor:
    """Four 16x16 discs of different size and brightness on a dark ground, on the 8-bit grid of [-1, 1]."""
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    out = []
    for i in range(4):
        disc = ((ys - 7.5) ** 2 + (xs - 7.5) ** 2 < (3 + i) ** 2).float()
        out.append(-0.8 + disc * (0.6 + 0.3 * i) + 0.05 * torch.sin(xs + i))
    x = torch.stack(out)[:, None].clamp(-1, 1)
    return torch.round((x + 1) * 127.5) / 127.5 - 1


def _fresh(seed: int = 0) -> HVAEModel:
    return HVAEModel.create(TINY, seed=seed)


def _train(model: HVAEModel, steps: int) -> list[float]:
    x, cond = _images(), model.encoder.encode(RECORDS)
    opt = torch.optim.Adam(model.net.parameters(), lr=1e-2)
    losses = []
    for step in range(steps):
        loss = model.net.elbo(x, cond, generator=torch.Generator().manual_seed(step))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These nets are tiny: one thread is fastest (and immune to a busy machine's other cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained():
    model = _fresh(seed=1)
    losses = _train(model, 30)
    model.net.eval()
    return model, losses


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"widths": (8, 16), "encoder_blocks": (1, 1, 1)}, "encoder_blocks"),
        ({"decoder_blocks": (1, 2, 0, 2, 2, 1)}, "decoder_blocks .* without blocks"),
        ({"widths": (24, 48, 64, 128, 160, 250)}, "widths .* multiples of hvae.bottleneck 4"),
        ({"sample_size": 60}, "sample_size 60 is not a multiple of 2\\*\\*4"),
        ({"z_max_res": 12}, "z_max_res 12 is not one of the resolutions \\(64, 32, 16, 8, 4, 1\\)"),
        ({"widths": (8,), "encoder_blocks": (1,), "decoder_blocks": (1,)}, "widths \\(8,\\) has 1 level"),
        ({"beta": -1.0}, "beta -1.0"),
        ({"z_dim": 0}, "z_dim 0"),
    ],
)
def test_config_errors_name_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        HVAEConfig(**kwargs)


def test_resolutions_and_latent_shapes():
    assert HVAEConfig().resolutions == (64, 32, 16, 8, 4, 1)
    assert TINY.resolutions == (16, 8, 4, 1)
    model = _fresh()
    assert model.net.latent_shapes == [(2, 1, 1), (2, 4, 4), (2, 8, 8)]
    zs = model.net.abduct(_images(), model.encoder.encode(RECORDS))
    assert [tuple(z.shape) for z in zs] == [(4, 2, 1, 1), (4, 2, 4, 4), (4, 2, 8, 8)]


def test_elbo_terms_have_per_image_shapes_and_are_finite():
    model = _fresh()
    out = model.net.elbo(_images(), model.encoder.encode(RECORDS), generator=torch.Generator().manual_seed(0))
    assert out["nll"].shape == (4,) and out["kl"].shape == (4,) and out["loss"].shape == ()
    assert all(torch.isfinite(v).all() for v in out.values())
    assert (out["kl"] >= 0).all() and (out["nll"] > 0).all()
    torch.testing.assert_close(out["loss"], (out["nll"] + TINY.beta * out["kl"]).mean())


def test_elbo_sampling_follows_the_generator():
    model = _fresh()
    x, cond = _images(), model.encoder.encode(RECORDS)
    a = model.net.elbo(x, cond, generator=torch.Generator().manual_seed(5))["nll"]
    b = model.net.elbo(x, cond, generator=torch.Generator().manual_seed(5))["nll"]
    c = model.net.elbo(x, cond, generator=torch.Generator().manual_seed(6))["nll"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_loss_falls_with_training(trained):
    _, losses = trained
    assert losses[-1] < 0.8 * losses[0], (losses[0], losses[-1])


@pytest.mark.parametrize("which", ["fresh", "trained"])
def test_null_counterfactual_is_the_input_bitwise(which, trained):
    model = _fresh() if which == "fresh" else trained[0]
    x, cond = _images(), model.encoder.encode(RECORDS)
    with torch.no_grad():
        assert torch.equal(model.net.counterfactual(x, cond, cond.clone()), x)


def test_counterfactual_is_deterministic_and_follows_the_condition(trained):
    model = trained[0]
    x, cond = _images(), model.encoder.encode(RECORDS)
    flipped = model.encoder.encode(
        [{**r, "sex": "male" if r["sex"] == "female" else "female"} for r in RECORDS]
    )
    with torch.no_grad():
        first = model.net.counterfactual(x, cond, flipped)
        again = model.net.counterfactual(x, cond, flipped)
    assert torch.equal(first, again)
    assert not torch.equal(first, x)
    assert first.shape == x.shape and first.min() >= -1 and first.max() <= 1


def test_decode_of_abducted_latents_tracks_the_input(trained):
    model = trained[0]
    x, cond = _images(), model.encoder.encode(RECORDS)
    with torch.no_grad():
        loc, logscale = model.net.decode(model.net.abduct(x, cond), cond)
    assert loc.shape == logscale.shape == x.shape
    assert torch.corrcoef(torch.stack([loc.flatten(), x.flatten()]))[0, 1] > 0.5
    with pytest.raises(SynthfairError, match="decode got latents"):
        model.net.decode(model.net.abduct(x, cond)[:-1], cond)


def test_sample_follows_its_generator_only(trained):
    model = trained[0]
    cond = model.encoder.encode(RECORDS)
    state = torch.get_rng_state()
    a = model.net.sample(cond, torch.Generator().manual_seed(3))
    b = model.net.sample(cond, torch.Generator().manual_seed(3))
    c = model.net.sample(cond, torch.Generator().manual_seed(4), temperature=0.5)
    with torch.no_grad():
        model.net.counterfactual(_images(), cond, cond.flip(0))
    assert torch.equal(torch.get_rng_state(), state)
    assert a.shape == (4, 1, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)


def test_create_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = _fresh(0), _fresh(0), _fresh(1)
    assert torch.equal(torch.get_rng_state(), state)
    states = [m.net.state_dict().values() for m in (a, b, c)]
    pairs = list(zip(*states, strict=True))
    assert all(torch.equal(p, q) for p, q, _ in pairs)
    assert not all(torch.equal(p, r) for p, _, r in pairs)


def test_save_load_round_trip(trained, tmp_path):
    model = trained[0]
    model.extra = {"train": {"steps": 30}}
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / MODEL_FILE).read_text())
    assert meta["kind"] == "hvae" and meta["model"]["widths"] == [8, 16, 16, 16]
    state = torch.get_rng_state()
    again = HVAEModel.load(tmp_path / "m")
    assert torch.equal(torch.get_rng_state(), state)
    assert not again.net.training and again.config == model.config and again.extra == model.extra
    x, cond = _images(), model.encoder.encode(RECORDS)
    with torch.no_grad():
        assert torch.equal(
            again.net.counterfactual(x, cond, cond.flip(0)), model.net.counterfactual(x, cond, cond.flip(0))
        )


@pytest.fixture
def saved(tmp_path):
    _fresh().save(tmp_path / "m")
    return tmp_path / "m"


def _edit_meta(directory, **changes):
    path = directory / MODEL_FILE
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def _edit_weights(directory, edit):
    state = load_file(str(directory / WEIGHTS))
    edit(state)
    save_file(state, str(directory / WEIGHTS))


def test_load_refuses_a_directory_without_model_json(saved):
    (saved / MODEL_FILE).unlink()
    with pytest.raises(ConfigError, match="not a synthfair model directory .*synthfair_model.json"):
        HVAEModel.load(saved)


def test_load_refuses_another_kind(saved):
    _edit_meta(saved, kind="diffusion")
    with pytest.raises(ConfigError, match="of kind 'diffusion', not 'hvae'"):
        HVAEModel.load(saved)
    meta = json.loads((saved / MODEL_FILE).read_text())
    del meta["kind"]
    (saved / MODEL_FILE).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="of kind 'diffusion', not 'hvae'"):  # no kind: a diffusion model
        HVAEModel.load(saved)


def test_load_refuses_weights_that_are_not_safetensors(saved):
    (saved / WEIGHTS).write_bytes(os.urandom(4096))
    with pytest.raises(SynthfairError, match="model.safetensors: not a readable safetensors file"):
        HVAEModel.load(saved)


def test_load_refuses_oversized_weights(saved):
    with open(saved / WEIGHTS, "r+b") as f:
        f.truncate((512 << 20) + 1)  # sparse: costs no disk
    with pytest.raises(SynthfairError, match="more than an HVAE's weights"):
        HVAEModel.load(saved)


def test_load_refuses_a_missing_or_unexpected_key(saved):
    _edit_weights(saved, lambda s: s.pop("x_loc.weight"))
    with pytest.raises(SynthfairError, match="missing key 'x_loc.weight'"):
        HVAEModel.load(saved)
    _edit_weights(
        saved, lambda s: s.update({"x_loc.weight": torch.zeros(1, 8, 1, 1), "extra": torch.zeros(1)})
    )
    with pytest.raises(SynthfairError, match="unexpected key 'extra'"):
        HVAEModel.load(saved)


def test_load_refuses_a_wrongly_shaped_tensor(saved):
    _edit_weights(saved, lambda s: s.update({"x_loc.weight": torch.zeros(1, 9, 1, 1)}))
    with pytest.raises(
        SynthfairError, match=r"'x_loc.weight' has shape \(1, 9, 1, 1\).*needs \(1, 8, 1, 1\)"
    ):
        HVAEModel.load(saved)


def test_load_refuses_weights_of_another_config(saved):
    _edit_meta(saved, model={**json.loads((saved / MODEL_FILE).read_text())["model"], "z_dim": 3})
    with pytest.raises(SynthfairError, match="has shape .* the config needs"):
        HVAEModel.load(saved)


def test_load_refuses_another_taxonomy(saved):
    data = read_yaml(load_taxonomy().path)
    data["covariates"]["sex"]["values"] = ["female", "male", "intersex"]
    with pytest.raises(ConfigError, match="trained with taxonomy covariates"):
        HVAEModel.load(saved, taxonomy=Taxonomy.from_dict(data))


def test_priors_read_the_latents_but_not_the_condition(trained):
    model = trained[0]
    x, cond = _images(), model.encoder.encode(RECORDS)
    outputs = []
    hooks = [b.prior.register_forward_hook(lambda m, i, o: outputs.append(o)) for b in model.net.decoder]
    try:
        with torch.no_grad():
            zs = model.net.abduct(x, cond)
            outputs.clear()
            factual, _ = model.net.decode(zs, cond)
            other, _ = model.net.decode(zs, cond.flip(0))
            zs[0] = zs[0] + 1.0
            model.net.decode(zs, cond)
    finally:
        for hook in hooks:
            hook.remove()
    n = len(model.net.decoder)
    assert all(torch.equal(a, b) for a, b in zip(outputs[:n], outputs[n : 2 * n], strict=True))
    assert not torch.equal(outputs[1], outputs[2 * n + 1])  # the second prior reads the top latent
    assert not torch.equal(factual, other)  # the condition reaches the image through the generative path


@pytest.fixture(scope="module")
def mediated():
    model = HVAEModel.create(HVAEConfig(**{**TINY_HVAE, "cond_prior": True}), seed=1)
    _train(model, 30)
    model.net.eval()
    return model


def _priors_and_latents(net, run):
    """Each stochastic level's (p_loc, p_scale, z) while ``run()`` makes one top-down pass after abduction."""
    seen = {"prior": [], "z": []}
    hooks = []
    for block in net.decoder:
        if block.stochastic:
            hooks.append(block.prior.register_forward_hook(lambda m, i, o: seen["prior"].append(o)))
            hooks.append(
                block.z_proj.register_forward_hook(
                    lambda m, i, o, z=block.z_dim: seen["z"].append(i[0][:, :z])
                )
            )
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    out = []
    for prior, z in zip(seen["prior"], seen["z"], strict=True):
        k = z.shape[1]
        out.append((prior[:, :k], prior[:, k : 2 * k].exp(), z))
    return out


def test_a_conditional_prior_reads_the_condition_and_keeps_the_null_exact(mediated):
    x, cond = _images(), mediated.encoder.encode(RECORDS)
    with torch.no_grad():
        assert torch.equal(mediated.net.counterfactual(x, cond, cond.clone()), x)
        zs = mediated.net.abduct(x, cond)
        factual = _priors_and_latents(mediated.net, lambda: mediated.net.decode(zs, cond))
        other = _priors_and_latents(mediated.net, lambda: mediated.net.decode(zs, cond.flip(0)))
    assert not torch.equal(factual[0][0], other[0][0])  # the top prior's location moves with the condition


def test_a_mediated_counterfactual_keeps_each_latents_exogenous_part(mediated):
    """z_i = loc_i + scale_i e_i: the counterfactual pass re-derives every latent from its factual e_i under
    the counterfactual prior, so the latents move (unlike the direct decode) and e_i stays."""
    net, x = mediated.net, _images()
    cond = mediated.encoder.encode(RECORDS)
    with torch.no_grad():
        factual = _priors_and_latents(net, lambda: net.abduct(x, cond))
        cf = _priors_and_latents(net, lambda: net.counterfactual(x, cond, cond.flip(0)))[len(factual) :]
    assert len(cf) == len(factual)
    for (loc, scale, z), (loc_cf, scale_cf, z_cf) in zip(factual, cf, strict=True):
        torch.testing.assert_close((z_cf - loc_cf) / scale_cf, (z - loc) / scale, atol=1e-4, rtol=1e-4)
    assert not torch.equal(cf[0][2], factual[0][2])  # the top latent moved (a direct decode keeps it)
