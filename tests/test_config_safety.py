"""Configs are data, never code: safe YAML only, includes confined, env vars required, and huge
or hostile configs refused quickly (issue 7)."""
import os
import tracemalloc

import pytest

import lossforge
from lossforge import ConfigError
from lossforge.objective import config as cfg

TERM = "terms:\n  a: {loss: mse, inputs: {labels: y, predictions: p}}\n"


# --- tags that would build Python objects --------------------------------------------------------

TAGS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/apply:builtins.open ['{marker}', 'w']",
    "!!python/object/new:builtins.open ['{marker}', 'w']",
    "!!python/object/apply:subprocess.check_call [['touch', '{marker}']]",
    "!!python/name:os.system ''",
    "!!python/module:os ''",
    "!!python/object:builtins.object {{}}",
]


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("where", ["text", "file", "included", "merge-key", "list-item"])
def test_python_tags_are_refused_and_nothing_runs(tmp_path, tag, where):
    marker = tmp_path / "ran"
    value = tag.format(marker=marker)
    text = {"text": f"name: {value}\n{TERM}",
            "file": f"name: {value}\n{TERM}",
            "included": f"include: evil.yaml\n{TERM}",
            "merge-key": f"x-base: &base {{weight: {value}}}\nterms:\n  a: {{<<: *base, loss: mse, "
                         f"inputs: {{labels: y, predictions: p}}}}\n",
            "list-item": f"regularization:\n  r: {{type: l2, scale: 1.0, params: [{value}]}}\n{TERM}",
            }[where]
    (tmp_path / "evil.yaml").write_text(f"name: {value}\n")
    (tmp_path / "main.yaml").write_text(text)
    source = text if where in ("text", "merge-key", "list-item") else tmp_path / "main.yaml"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(ConfigError, match="tags that build Python objects are not allowed") as info:
            lossforge.load_objective(source)
    finally:
        os.chdir(cwd)
    assert "python/" in str(info.value) and "nothing was run" in str(info.value)
    assert not marker.exists()


def test_safe_tags_still_work_and_unknown_tags_are_refused():
    objective = lossforge.load_objective("name: !!str 12\nterms:\n  a: {loss: mse, weight: !!float 2,"
                                         " inputs: {labels: y, predictions: p}}\n")
    assert objective.name == "12" and objective.config.terms[0].weight == 2.0
    with pytest.raises(ConfigError, match="<yaml text>:1:7: invalid YAML.*!custom"):
        lossforge.load_objective(f"name: !custom 3\n{TERM}")


# --- include: confined to the config's directory unless asked -------------------------------------

@pytest.fixture
def tree(tmp_path):
    """configs/main.yaml, configs/sub/part.yaml, outside/secret.yaml, and a symlink out."""
    configs, outside = tmp_path / "configs", tmp_path / "outside"
    (configs / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.yaml").write_text("name: secret\n")
    (configs / "sub" / "part.yaml").write_text("name: part\n")
    (configs / "link.yaml").symlink_to(outside / "secret.yaml")
    return configs, outside


def _main(configs, target):
    path = configs / "main.yaml"
    path.write_text(f"include: {target}\n{TERM}")
    return path


@pytest.mark.parametrize("target", ["../outside/secret.yaml", "link.yaml", "ABSOLUTE",
                                    "sub/../../outside/secret.yaml"])
def test_include_cannot_escape_the_config_directory(tree, target):
    configs, outside = tree
    target = str(outside / "secret.yaml") if target == "ABSOLUTE" else target
    path = _main(configs, target)
    with pytest.raises(ConfigError, match=r"main.yaml:1:1: `include: .*` resolves to .*secret.yaml, "
                                          r"outside the config's directory .*include_roots"):
        lossforge.load_objective(path)


def test_include_outside_is_allowed_when_its_directory_is_named(tree):
    configs, outside = tree
    for target in ("../outside/secret.yaml", "link.yaml", str(outside / "secret.yaml")):
        objective = lossforge.load_objective(_main(configs, target), include_roots=[outside])
        assert objective.name == "secret"
    assert lossforge.load_objective(_main(configs, "../outside/secret.yaml"),
                                    include_roots=str(outside)).name == "secret"


def test_includes_inside_the_directory_work_also_from_subdirectories(tree):
    configs, _ = tree
    (configs / "sub" / "inner.yaml").write_text("include: ../base.yaml\n")
    (configs / "base.yaml").write_text("name: base\n")
    assert lossforge.load_objective(_main(configs, "sub/part.yaml")).name == "part"
    assert lossforge.load_objective(_main(configs, "sub/inner.yaml")).name == "base"


def test_include_from_text_is_confined_to_the_working_directory(tree, monkeypatch):
    configs, _ = tree
    monkeypatch.chdir(configs)
    assert lossforge.load_objective(f"include: sub/part.yaml\n{TERM}").name == "part"
    with pytest.raises(ConfigError, match="outside the config's directory"):
        lossforge.load_objective(f"include: ../outside/secret.yaml\n{TERM}")


def test_include_cycles_and_chains_are_bounded(tmp_path):
    (tmp_path / "a.yaml").write_text(f"include: b.yaml\n{TERM}")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        lossforge.load_objective(tmp_path / "a.yaml")
    for i in range(40):
        (tmp_path / f"c{i}.yaml").write_text(f"include: c{i + 1}.yaml\n")
    (tmp_path / "c40.yaml").write_text("name: deep\n")
    with pytest.raises(ConfigError, match=f"chained more than {cfg.MAX_INCLUDE_DEPTH} deep"):
        lossforge.load_objective(tmp_path / "c0.yaml")


def test_special_files_and_bad_paths_are_config_errors(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "binary.yaml").write_bytes(b"name: \xff\xfe\x00\n")
    for source in (tmp_path / "dir.yaml", tmp_path / "missing.yaml", "bad\0name.yaml",
                   tmp_path / "binary.yaml"):
        with pytest.raises(ConfigError):
            lossforge.load_objective(source)
    (tmp_path / "main.yaml").write_text(f"include: /dev/zero\n{TERM}")
    with pytest.raises(ConfigError, match="outside the config's directory"):
        lossforge.load_objective(tmp_path / "main.yaml")
    with pytest.raises(ConfigError, match="not found"):  # a character device is no config file
        lossforge.load_objective(tmp_path / "main.yaml", include_roots=["/dev"])


# --- ${ENV} ---------------------------------------------------------------------------------------

def test_unset_environment_variable_is_an_error_with_its_line(monkeypatch):
    monkeypatch.delenv("LF_UNSET_A", raising=False)
    monkeypatch.delenv("LF_UNSET_B", raising=False)
    text = ("name: run-${LF_UNSET_A}\nterms:\n  a: {loss: mse, weight: '${LF_UNSET_B}', "
            "inputs: {labels: y, predictions: p}}\n")
    with pytest.raises(ConfigError) as info:
        lossforge.load_objective(text)
    assert info.value.problems == [
        "<yaml text>:1:1: `name`: environment variable ${LF_UNSET_A} is not set (set it, or "
        "write ${LF_UNSET_A:-default} to give a default)",
        "<yaml text>:3:18: `terms.a.weight`: environment variable ${LF_UNSET_B} is not set (set "
        "it, or write ${LF_UNSET_B:-default} to give a default)"]


def test_set_empty_and_defaulted_variables(monkeypatch):
    monkeypatch.setenv("LF_SET", "2.5")
    monkeypatch.setenv("LF_EMPTY", "")
    monkeypatch.delenv("LF_UNSET_A", raising=False)
    objective = lossforge.load_objective(
        "name: '${LF_EMPTY}${LF_UNSET_A:-fallback}'\nterms:\n  a: {loss: mse, weight: '${LF_SET}',"
        " inputs: {labels: y, predictions: p}}\n  b: {loss: mae, weight: '${LF_UNSET_A:-}0.5', "
        "inputs: {labels: y, predictions: p}}\n")
    assert objective.name == "fallback"
    assert [t.weight for t in objective.config.terms] == [2.5, 0.5]


def test_environment_values_are_data_too(monkeypatch, tmp_path):
    marker = tmp_path / "ran"
    monkeypatch.setenv("LF_EVIL", f"!!python/object/apply:os.system ['touch {marker}']")
    monkeypatch.setenv("LF_BOMB", "[" * 5000)
    objective = lossforge.load_objective(f"name: ${{LF_EVIL}}\n{TERM}")
    assert objective.name.startswith("!!python/object/apply") and not marker.exists()
    assert lossforge.load_objective(f"name: ${{LF_BOMB}}\n{TERM}").name == "[" * 5000


# --- huge and hostile configs: refused before building anything ---------------------------------

def _billion_laughs(levels=9, width=9):
    lines = ["x-a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"x-a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]"
              for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\n{TERM}"


HOSTILE = {
    "deep flow nesting": ("terms: " + "[" * 10_000 + "]" * 10_000 + "\n",
                          "nested more than 64 levels deep"),
    "deep block nesting": ("terms:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(200)),
                           "nested more than 64 levels deep"),
    "billion laughs": (_billion_laughs(), r"expands to 44129615\d\d nodes.*alias bomb"),
    "recursive alias": (f"x-a: &a [*a]\n{TERM}", "refers to a node that contains it"),
    "10 MB of terms": ("terms:\n" + "".join(
        f"  t{i}: {{loss: mse, inputs: {{labels: y, predictions: p}}}}\n" for i in range(170_000)),
        "larger than 256 KiB"),
    "10 MB scalar": ("name: " + "x" * (10 << 20) + f"\n{TERM}", "larger than 256 KiB"),
}


@pytest.mark.parametrize("source", ["text", "file"])
@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_configs_are_refused_in_bounded_memory(tmp_path, case, source):
    text, message = HOSTILE[case]
    target = text
    if source == "file":
        target = tmp_path / "hostile.yaml"
        target.write_text(text)
    # refused before anything is expanded or built: bounded memory, not wall time (timed
    # assertions flake on shared machines; speed belongs in benchmarks/). Peaks measured:
    # 0.002-0.9 MB; the billion laughs expanded would need gigabytes.
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=message):
            lossforge.load_objective(target)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{case}: peak {peak / 1e6:.1f} MB allocated while refusing it"


def test_hostile_included_file_is_refused_too(tmp_path):
    (tmp_path / "big.yaml").write_text("name: " + "x" * (1 << 20) + "\n")
    (tmp_path / "main.yaml").write_text(f"include: big.yaml\n{TERM}")
    with pytest.raises(ConfigError, match="big.yaml is larger than 256 KiB"):
        lossforge.load_objective(tmp_path / "main.yaml")


def test_limits_leave_room_for_real_configs():
    """Anchors reused many times and a long config below the limits still load."""
    text = ("x-io: &io {labels: y, predictions: p}\nterms:\n" +
            "".join(f"  t{i}: {{loss: mse, inputs: *io}}\n" for i in range(1000)))
    assert len(lossforge.load_objective(text).config.terms) == 1000
    nested = "x-deep: " + "[" * 60 + "]" * 60 + f"\n{TERM}"
    assert lossforge.load_objective(nested).name == "objective"
