"""The YAML composer: objectives, components, gradients, weighting, tracking, config errors."""
import csv
import re
import threading
from pathlib import Path

import numpy as np
import pytest

import lossforge
import reference as ref
from lossforge import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def multitask_batch(rng, n=32):
    return ({"click": (rng.random(n) > 0.5).astype(np.float64),
             "click_prob": rng.uniform(0.05, 0.95, n),
             "rating": rng.normal(size=n), "rating_pred": rng.normal(size=n)},
            {"dense_w": rng.normal(size=(6, 3)), "out_w": rng.normal(size=3)})


def multitask_reference(batch, params):
    click = ref.log_loss(batch["click"], batch["click_prob"]).mean()
    rating = ref.mean_squared_error(batch["rating"], batch["rating_pred"]).mean()
    l2 = 1e-4 * sum(np.sum(w ** 2) / 2 for w in params.values())
    return 2 * click + rating + l2, click, rating, l2


def test_multitask_config_matches_numpy_reference():
    objective = lossforge.load_objective(CONFIGS / "multitask.yaml")
    batch, params = multitask_batch(np.random.default_rng(0))
    result = objective(batch, params=params)
    total, click, rating, l2 = multitask_reference(batch, params)
    assert result.total == pytest.approx(total, rel=1e-12)
    c = result.components
    assert (c["click"].value, c["click"].weight) == (pytest.approx(click, rel=1e-12), 2.0)
    assert c["click"].weighted == 2.0 * c["click"].value
    assert c["rating"].value == pytest.approx(rating, rel=1e-12)
    assert (c["l2"].value, c["l2"].weight, c["l2"].kind) == (pytest.approx(l2, rel=1e-12), 1.0,
                                                             "regularizer")
    assert result.total == sum(x.weighted for x in c.values())


def test_scene_depth_pose_config_with_anchors_matches_reference():
    objective = lossforge.load_objective(CONFIGS / "scene_depth_pose.yaml")
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, size=8)
    batch = {"scene_labels": np.eye(5)[labels], "scene_logits": rng.normal(size=(8, 5)),
             "depth": rng.uniform(1, 5, size=(8, 16)), "depth_pred": rng.uniform(1, 5, size=(8, 16)),
             "pose": rng.normal(size=(8, 6)), "pose_pred": rng.normal(size=(8, 6))}
    params = {"conv_w": rng.normal(size=(3, 3, 2)), "fc_w": rng.normal(size=(4, 5))}
    result = objective(batch, params)
    want = (ref.softmax_cross_entropy(batch["scene_labels"], batch["scene_logits"]).mean()
            + ref.mean_squared_error(batch["depth"], batch["depth_pred"]).mean()
            + 0.5 * ref.huber_loss(batch["pose"], batch["pose_pred"], 0.5).mean()
            + 4e-5 * sum(np.sum(w ** 2) / 2 for w in params.values()))
    assert result.total == pytest.approx(want, rel=1e-12)


def test_to_dict_round_trips():
    objective = lossforge.load_objective(CONFIGS / "scene_depth_pose.yaml")
    again = lossforge.Objective.from_dict(objective.to_dict())
    assert again.to_dict() == objective.to_dict()
    assert again.config == objective.config


def test_value_and_grad_matches_finite_differences():
    objective = lossforge.load_objective(CONFIGS / "multitask.yaml")
    batch, params = multitask_batch(np.random.default_rng(2), n=6)
    result, grads = objective.value_and_grad(batch, params)
    assert set(grads) == {"click_prob", "rating_pred", "dense_w", "out_w"}
    h = 1e-6
    for source, key in [(batch, "click_prob"), (batch, "rating_pred"), (params, "out_w")]:
        numeric = np.zeros_like(source[key])
        for i in np.ndindex(source[key].shape):
            saved = source[key][i]
            source[key][i] = saved + h
            up = objective(batch, params).total
            source[key][i] = saved - h
            down = objective(batch, params).total
            source[key][i] = saved
            numeric[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(grads[key], numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("label_dtype", [np.float32, np.float64])
def test_terms_sharing_predictions_add_their_weighted_gradients(label_dtype):
    """Three terms on one prediction array (task weights 2, 0.5 and 1): the gradient is the
    sum of each loss's gradient times its weight, in the dtype NumPy's arithmetic gives (float32
    predictions with float64 labels give float64 gradients for the terms that read both), and
    no input array is changed (the objective adds the terms' gradients in place)."""
    config = {"terms": {  # the float32 term first: a float64 one must then widen the sum
        "c": {"loss": "huber_loss", "inputs": {"labels": "z", "predictions": "p"}},
        "a": {"loss": "mse", "weight": 2.0, "inputs": {"labels": "y", "predictions": "p"}},
        "b": {"loss": "absolute_difference", "weight": 0.5,
              "inputs": {"labels": "y", "predictions": "p"}}}}
    objective = lossforge.load_objective(config)
    rng = np.random.default_rng(5)
    batch = {"y": rng.normal(size=(8, 3)).astype(label_dtype),
             "z": rng.normal(size=(8, 3)).astype(np.float32),
             "p": rng.normal(size=(8, 3)).astype(np.float32)}
    saved = {k: v.copy() for k, v in batch.items()}
    _, grads = objective.value_and_grad(batch)
    spec = lossforge.registry.get
    want = (0.0 + spec("huber_loss").value_and_grad(batch["z"], batch["p"])[1]
            + 2.0 * spec("mse").value_and_grad(batch["y"], batch["p"])[1]
            + 0.5 * spec("absolute_difference").value_and_grad(batch["y"], batch["p"])[1])
    assert grads["p"].dtype == want.dtype == np.result_type(label_dtype, np.float32)
    np.testing.assert_array_equal(grads["p"], want)
    for key, value in saved.items():
        np.testing.assert_array_equal(batch[key], value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_task_weights_scale_the_gradients_in_the_kernels(dtype):
    """A term's task weight multiplies its gradient inside the kernel's scale (no pass of its
    own): the gradient is the weighted sum of the float64 formulas' gradients, within the
    rounding of the dtype, for weights that are not powers of two, with scalar weights (folded
    into the kernel) and per-sample ones (folded into the reduction's denominator)."""
    config = {"terms": {
        "a": {"loss": "mse", "weight": 0.3, "inputs": {"labels": "y", "predictions": "p"}},
        "b": {"loss": "log_loss", "weight": 1.7, "inputs": {"labels": "z", "predictions": "q",
                                                             "weights": "w"}},
        "c": {"loss": "huber_loss", "weight": 0.7, "reduction": "weighted_sum",
              "inputs": {"labels": "y", "predictions": "p"}}}}
    objective = lossforge.load_objective(config)
    rng = np.random.default_rng(8)
    batch = {"y": rng.normal(size=(64, 5)), "p": rng.normal(size=(64, 5)),
             "z": (rng.random((64, 5)) > 0.5) * 1.0, "q": rng.uniform(0.05, 0.95, (64, 5)),
             "w": rng.random((64, 1))}
    batch = {k: v.astype(dtype) for k, v in batch.items()}
    _, grads = objective.value_and_grad(batch)
    b = {k: v.astype(np.float64) for k, v in batch.items()}
    d = b["p"] - b["y"]
    huber = np.where(np.abs(d) < 1.0, d, np.sign(d))
    want_p = 0.3 * 2 * d / d.size + 0.7 * huber
    eps = 1e-7
    dlog = (-b["z"] / (b["q"] + eps) + (1 - b["z"]) / (1 - b["q"] + eps)) * b["w"]
    want_q = 1.7 * dlog / np.count_nonzero(np.broadcast_to(b["w"], d.shape))
    for key, want in (("p", want_p), ("q", want_q)):
        assert grads[key].dtype == dtype
        np.testing.assert_allclose(grads[key], want, rtol=8 * np.finfo(dtype).eps,
                                   atol=4 * np.finfo(dtype).eps * np.abs(want).max())


def test_grad_out_receives_the_objectives_gradients():
    """``grad_out`` arrays (NaN-filled here) receive the gradients bit for bit as fresh
    arrays would, two terms sharing one prediction array included, and come back in
    ``grads``; keys left out get fresh arrays; totals and components are the same."""
    config = {"terms": {
        "a": {"loss": "mse", "weight": 0.3, "inputs": {"labels": "y", "predictions": "p"}},
        "b": {"loss": "absolute_difference", "weight": 1.3,
              "inputs": {"labels": "y", "predictions": "p"}},
        "c": {"loss": "sigmoid_cross_entropy", "weight": 2.5,
              "inputs": {"multi_class_labels": "z", "logits": "x"}},
        "d": {"loss": "softmax_cross_entropy", "inputs": {"onehot_labels": "o", "logits": "s"}}}}
    objective = lossforge.load_objective(config)
    rng = np.random.default_rng(9)
    for rows in (6, 40000):  # serial and multi-threaded kernels
        batch = {"y": rng.normal(size=(rows, 4)), "p": rng.normal(size=(rows, 4)),
                 "z": (rng.random((rows, 4)) > 0.5) * 1.0, "x": rng.normal(size=(rows, 4)) * 3,
                 "o": np.eye(4)[rng.integers(0, 4, rows)], "s": rng.normal(size=(rows, 4))}
        batch = {k: v.astype(np.float32) for k, v in batch.items()}
        fresh_result, fresh = objective.value_and_grad(batch)
        for keys in (("p", "x", "s"), ("p",), ("s",)):
            buffers = {k: np.full((rows, 4), np.nan, np.float32) for k in keys}
            result, grads = objective.value_and_grad(batch, grad_out=buffers)
            assert result.total == fresh_result.total
            assert set(grads) == set(fresh)
            for key in fresh:
                np.testing.assert_array_equal(grads[key], fresh[key], err_msg=key)
            assert all(grads[k] is buffers[k] for k in keys)


def test_grad_out_refusals_name_the_problem():
    config = {"terms": {
        "a": {"loss": "mse", "inputs": {"labels": "y", "predictions": "p"}},
        "b": {"loss": "mse", "inputs": {"labels": "y64", "predictions": "q"}},
        "c": {"loss": "mse", "inputs": {"labels": "y64", "predictions": "p"}}}}
    objective = lossforge.load_objective(config)
    batch = {"y": np.zeros((3, 2), np.float32), "p": np.ones((3, 2), np.float32),
             "y64": np.zeros((3, 2)), "q": np.ones((3, 2))}
    saved = {k: v.copy() for k, v in batch.items()}
    f32 = np.empty((3, 2), np.float32)
    cases = [
        ([f32], lossforge.InvalidTypeError, "must be a mapping"),
        ({"y": f32}, lossforge.InvalidArgumentError, "no term differentiates"),
        ({"p": batch["y"]}, lossforge.InvalidArgumentError, "shares memory with batch['y']"),
        ({"p": f32, "q": f32}, lossforge.InvalidArgumentError, "shares memory with grad_out"),
        ({"q": np.empty((3, 2), np.float32)}, lossforge.InvalidArgumentError, "dtype float32"),
        ({"q": np.empty((2, 3))}, lossforge.InvalidArgumentError, "shape (2, 3)"),
        ({"p": f32}, lossforge.InvalidArgumentError, "grad_out['p'] (float32) cannot hold"),
    ]
    for grad_out, error, words in cases:
        with pytest.raises(error, match=re.escape(words)):
            objective.value_and_grad(batch, grad_out=grad_out)
    with pytest.raises(lossforge.InvalidArgumentError, match="device='cpu'"):
        objective.value_and_grad(batch, grad_out={"q": np.empty((3, 2))}, device="cuda")
    for key, value in saved.items():
        np.testing.assert_array_equal(batch[key], value)
    # the float64 term "c" widens p's gradient: a float64 array holds it
    buffer = np.empty((3, 2))
    _, grads = objective.value_and_grad(batch, grad_out={"q": buffer})
    assert grads["q"] is buffer and grads["p"].dtype == np.float64


def test_tracker_mean_is_exact_not_a_mean_of_means():
    config = {"terms": {"depth": {"loss": "mse", "inputs": {"labels": "y", "predictions": "p",
                                                            "weights": "mask"}}}}
    objective = lossforge.load_objective(config)
    rng = np.random.default_rng(3)
    chunks = []
    for n in (5, 17, 3):
        y, p = rng.normal(size=(n, 4)), rng.normal(size=(n, 4))
        mask = (rng.random((n, 4)) > 0.5).astype(float)
        chunks.append({"y": y, "p": p, "mask": mask})
        objective(chunks[-1])
    whole = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    one_pass = lossforge.losses.mean_squared_error(whole["y"], whole["p"], weights=whole["mask"])
    assert objective.tracker.mean("depth") == pytest.approx(float(one_pass), rel=1e-12)
    per_call = [h["depth"] for h in objective.tracker.history()]
    assert objective.tracker.mean("depth") != pytest.approx(np.mean(per_call), rel=1e-6)
    assert objective.tracker.mean("depth", last=1) == pytest.approx(per_call[-1])


def test_tracker_epochs_history_csv_and_reset(tmp_path):
    objective = lossforge.load_objective(CONFIGS / "multitask.yaml")
    rng = np.random.default_rng(4)
    for epoch in range(2):
        for _ in range(3):
            objective(*multitask_batch(rng))
        objective.tracker.end_epoch()
    assert len(objective.tracker) == 6 and len(objective.tracker.epoch_means("rating")) == 2
    path = tmp_path / "history.csv"
    objective.tracker.to_csv(path)
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 6 and {"step", "epoch", "total", "click/weighted", "l2"} <= set(rows[0])
    assert float(rows[-1]["total"]) == pytest.approx(objective.tracker.history()[-1]["total"])
    objective.tracker.reset()
    assert len(objective.tracker) == 0


def test_uncertainty_weighting_components_and_gradients():
    config = {"terms": {"a": {"loss": "mse", "weight": 2.0, "inputs": {"labels": "y", "predictions": "p"}},
                        "b": {"loss": "mae", "inputs": {"labels": "y", "predictions": "q"}}},
              "weighting": {"strategy": "uncertainty"}}
    objective = lossforge.load_objective(config)
    rng = np.random.default_rng(5)
    batch = {"y": rng.normal(size=10), "p": rng.normal(size=10), "q": rng.normal(size=10)}
    params = {"log_var/a": 0.3, "log_var/b": -0.2}
    result, grads = objective.value_and_grad(batch, params)
    a, b = result["a"], result["b"]
    assert a.weight == pytest.approx(2.0 * np.exp(-0.3)) and b.weight == pytest.approx(np.exp(0.2))
    assert result["a/log_var"].weighted == 0.3
    assert result.total == pytest.approx(a.weighted + b.weighted + 0.3 - 0.2)
    h = 1e-6
    for key in params:
        up = objective(batch, {**params, key: params[key] + h}).total
        down = objective(batch, {**params, key: params[key] - h}).total
        assert grads[key] == pytest.approx((up - down) / (2 * h), rel=1e-6)
    # large log-variances make the total negative: documented, not an error
    assert objective(batch, {"log_var/a": -50.0 + 60, "log_var/b": 10.0}).total > 0
    assert objective(batch, {"log_var/a": -1.0, "log_var/b": -30.0}).total < 1e15


def test_dwa_weights_follow_the_last_two_epochs():
    config = {"terms": {"a": {"loss": "mse", "inputs": {"labels": "y", "predictions": "p"}},
                        "b": {"loss": "mse", "inputs": {"labels": "y", "predictions": "q"}}},
              "weighting": {"strategy": "dwa", "temperature": 2.0}}
    objective = lossforge.load_objective(config)
    y = np.zeros(4)
    scales = [(1.0, 1.0), (0.5, 1.0)]  # epoch 0 and 1: task a halves its loss
    for sa, sb in scales:
        result = objective({"y": y, "p": np.full(4, sa), "q": np.full(4, sb)})
        assert (result["a"].weight, result["b"].weight) == (1.0, 1.0)
        objective.tracker.end_epoch()
    result = objective({"y": y, "p": np.ones(4), "q": np.ones(4)})
    ra, rb = 0.25 / 1.0, 1.0 / 1.0  # ratios of epoch means (mse of 0.5 is 0.25)
    ea, eb = np.exp(ra / 2), np.exp(rb / 2)
    assert result["a"].weight == pytest.approx(2 * ea / (ea + eb))
    assert result["b"].weight == pytest.approx(2 * eb / (ea + eb))


def test_call_time_errors_name_the_term():
    objective = lossforge.load_objective(CONFIGS / "multitask.yaml")
    batch, params = multitask_batch(np.random.default_rng(6))
    del batch["rating_pred"]
    with pytest.raises(ValueError, match=r"term 'rating'.*no key 'rating_pred' for input 'predictions'"):
        objective(batch, params)
    batch, params = multitask_batch(np.random.default_rng(6))
    batch["rating_pred"] = batch["rating_pred"][:5]
    with pytest.raises(ValueError, match=r"term 'rating' \(mean_squared_error\): Shapes"):
        objective(batch, params)
    with pytest.raises(ValueError, match=r"regularizer 'l2' needs the parameter array 'dense_w'"):
        objective(multitask_batch(np.random.default_rng(6))[0], params={})


BAD = """\
name: bad
terms:
  a:
    loss: hubber_loss
    wieght: 2
    inputs: {labels: y, prediction: p}
  b:
    loss: mse
    weight: .nan
    inputs: {labels: y, predictions: p}
    params: {delta: 1}
    reduction: none
regularization:
  r: {type: l3, scale: 1}
  s: {type: l2, scale: 1}
weighting: {strategy: dwb}
"""


def test_every_config_problem_is_reported_at_once_with_its_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as info:
        lossforge.load_objective(path)
    text = str(info.value)
    expected = [f"{path}:5:5: `terms.a.wieght`: unknown key 'wieght'; did you mean 'weight'?",
                f"{path}:4:5: `terms.a.loss`: unknown loss 'hubber_loss'; did you mean 'huber_loss'",
                f"{path}:9:5: `terms.b.weight`: weight must be finite",
                "`terms.b.params.delta`: mean_squared_error takes no parameter 'delta'",
                "`terms.b.reduction`: a term must reduce", "`regularization.r.type`: must be one of",
                "`regularization.s.params`: a regularizer needs `params:`",
                f"{path}:16:13: `weighting.strategy`: unknown strategy 'dwb'; did you mean 'dwa'?"]
    for fragment in expected:
        assert fragment in text, fragment
    assert len(info.value.problems) == 8  # a's inputs can't be checked: its loss is unknown
    assert isinstance(info.value, ValueError)


def test_malformed_yaml_gives_line_and_column():
    with pytest.raises(ConfigError, match=r"<yaml text>:3:\d+: invalid YAML"):
        lossforge.load_objective("terms:\n  a: {loss: mse\n  b: [1, 2\n")


def test_configs_cannot_run_code(tmp_path):
    marker = tmp_path / "ran"
    text = f"terms: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(ConfigError, match="invalid YAML"):
        lossforge.load_objective(text)
    assert not marker.exists()


def test_env_interpolation_and_include(tmp_path, monkeypatch):
    (tmp_path / "base.yaml").write_text(
        "terms:\n  a: {loss: mse, weight: '${A_WEIGHT}', inputs: {labels: y, predictions: p}}\n")
    (tmp_path / "main.yaml").write_text(
        "include: base.yaml\nname: ${RUN_NAME:-fallback}\n"
        "terms:\n  b: {loss: mae, inputs: {labels: y, predictions: p}}\n")
    monkeypatch.setenv("A_WEIGHT", "3.5")
    objective = lossforge.load_objective(tmp_path / "main.yaml")
    assert objective.name == "fallback"
    assert [(t.name, t.weight) for t in objective.config.terms] == [("a", 3.5), ("b", 1.0)]
    monkeypatch.delenv("A_WEIGHT")
    with pytest.raises(ConfigError, match=r"\$\{A_WEIGHT\} is not set"):
        lossforge.load_objective(tmp_path / "main.yaml")


def test_one_objective_from_many_threads_matches_serial_calls():
    objective = lossforge.load_objective(CONFIGS / "multitask.yaml")
    rng = np.random.default_rng(7)
    calls = [multitask_batch(rng) for _ in range(16)]
    serial = [objective(*c).total for c in calls]
    objective.tracker.reset()
    results = [None] * len(calls)

    def work(i):
        results[i] = objective(*calls[i]).total

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == serial and len(objective.tracker) == len(calls)


def test_unknown_batch_type_and_non_mapping_config():
    objective = lossforge.load_objective(CONFIGS / "multitask.yaml")
    with pytest.raises(TypeError, match="`batch` must be a mapping"):
        objective([1, 2, 3])
    with pytest.raises(ConfigError, match="a mapping with a `terms:` section"):
        lossforge.load_objective("- just\n- a list\n")


def test_weighted_class_config_seed_000():
    """weight = 4 * (label == 3) + 1: class-3 examples count five times."""
    objective = lossforge.load_objective(CONFIGS / "weighted_class.yaml")
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 5, size=12)
    logits = rng.normal(size=(12, 5))
    weights = 4.0 * (labels == 3) + 1.0
    result = objective({"onehot": np.eye(5)[labels], "logits": logits, "example_weight": weights})
    ce = ref.softmax_cross_entropy(np.eye(5)[labels], logits)
    assert result.total == pytest.approx(np.sum(weights * ce) / 12, rel=1e-12)


def test_masked_depth_config_seed_000():
    objective = lossforge.load_objective(CONFIGS / "masked_depth.yaml")
    rng = np.random.default_rng(9)
    depth = rng.uniform(0.5, 10, size=(4, 50))
    depth[rng.random(depth.shape) < 0.3] = 0.0
    pred = depth + rng.normal(scale=0.2, size=depth.shape)
    valid = (depth > 0).astype(float)
    result = objective({"depth": depth, "depth_pred": pred, "depth_valid": valid})
    want = np.sum(valid * (pred - depth) ** 2) / np.count_nonzero(valid)
    assert result.total == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_loads_and_runs_on_synthetic_data(config):
    objective = lossforge.load_objective(CONFIGS / config)
    batch, params = objective.example_batch(seed=1, batch_size=8, classes=6)
    result = objective(batch, params)
    assert np.isfinite(result.total) and result.total == sum(c.weighted for c in result.components.values())


def test_duplicate_component_names_are_reported():
    text = ("terms:\n  a: {loss: mse, inputs: {labels: y, predictions: p}}\n"
            "  a: {loss: mae, inputs: {labels: y, predictions: p}}\n")
    with pytest.raises(ConfigError, match=r"<yaml text>:3:3: `terms.a`: duplicate key"):
        lossforge.load_objective(text)
