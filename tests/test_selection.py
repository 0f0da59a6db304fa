"""Selections resolve exactly as dbt resolves them, and bad ones are refused by name."""

import gzip
import json
import subprocess
import sys

import pytest
from dagster_dbt.utils import select_unique_ids
from dbt.cli.main import dbtRunner

from rescue_defs.planning.manifest import DbtManifest
from rescue_defs.planning.selection import SelectionError, Selector
from tests.conftest import shared_manifest_path

SHOP_SELECTIONS = [
    ("fct_orders", ""),
    ("+fct_orders", ""),
    ("fct_orders+", ""),
    ("+int_orders_enriched+", ""),
    ("2+fct_orders", ""),
    ("int_orders_enriched+1", ""),
    ("@int_sessions", ""),
    ("tag:finance", ""),
    ("tag:web+", ""),
    ("path:models/marts", ""),
    ("config.materialized:incremental", ""),
    ("stg_orders+,path:models/marts", ""),
    ("int_orders_enriched+ +mart_marketing_attribution+", "fct_orders+"),
    ("source:raw.orders+", "tag:marts"),
    ("path:models/intermediate tag:finance", "int_sessions int_customer_sessions"),
]


@pytest.fixture(scope="module")
def dbt_ls(shop_project, tmp_path_factory):
    """Real `dbt ls` on the bundled project (dbt's own runner, in-process)."""
    runner = dbtRunner()
    env = pytest.MonkeyPatch()
    env.setenv("RESCUE_DUCKDB_PATH", str(tmp_path_factory.mktemp("ls") / "ls.duckdb"))

    def ls(select: str, exclude: str) -> set[str]:
        args = [
            "ls",
            "--resource-type",
            "model",
            "--output",
            "json",
            "--output-keys",
            "unique_id",
            "--quiet",
            "--select",
            select,
            "--project-dir",
            str(shop_project.project_dir),
            "--profiles-dir",
            str(shop_project.profiles_dir),
        ]
        if exclude:
            args += ["--exclude", exclude]
        result = runner.invoke(args)
        assert result.success, result.exception
        return {json.loads(line)["unique_id"] for line in result.result}

    yield ls
    env.undo()


@pytest.mark.parametrize(("select", "exclude"), SHOP_SELECTIONS)
def test_resolved_models_equal_dbt_ls(shop_manifest, dbt_ls, select, exclude):
    resolved = Selector(shop_manifest).resolve(select, exclude).models
    assert resolved == dbt_ls(select, exclude)
    assert resolved


def _selections_for(manifest: DbtManifest) -> list[tuple[str, str]]:
    """A broad, deterministic set of selections drawn from the manifest itself."""
    by_degree = sorted(
        manifest.models,
        key=lambda m: (-manifest.graph.in_degree(m) - manifest.graph.out_degree(m), m),
    )
    unique = [m for m in by_degree if len(manifest.by_name[manifest.name(m)]) == 1]
    a, b, c = (manifest.name(m) for m in unique[:3])
    tags = sorted({t for n in manifest.models.values() for t in n.get("tags", [])})
    folder = sorted(
        {"/".join(n["original_file_path"].split("/")[:2]) for n in manifest.models.values()}
    )[0]
    selections = [
        (a, ""),
        (f"+{a}", ""),
        (f"{a}+", ""),
        (f"+{b}+", ""),
        (f"2+{a}", ""),
        (f"{b}+1", ""),
        (f"@{c}", ""),
        (f"path:{folder}", ""),
        ("config.materialized:incremental", ""),
        (f"{a}+ +{b}+", f"{c}+"),
        (f"+{a},config.materialized:table", ""),
    ]
    if tags:
        selections += [(f"tag:{tags[0]}", ""), (f"tag:{tags[-1]}+", f"{a}")]
    return selections


@pytest.mark.parametrize(
    "name",
    [
        "generated-800-models",
        "gitlab-analytics-2332-models",
        "dbt-cerebro-1276-models",
        "tuva-737-models",
        "mattermost-analytics-302-models",
    ],
)
def test_resolved_models_equal_dbt_selector_on_real_manifests(name, request):
    if name == "generated-800-models":
        manifest = request.getfixturevalue("generated_manifest")
        raw = manifest.raw
    else:
        with gzip.open(shared_manifest_path(name), "rt") as f:
            raw = json.load(f)
        manifest = DbtManifest(raw)
    selector = Selector(manifest)
    for select, exclude in _selections_for(manifest):
        try:
            ours = selector.resolve(select, exclude).models
        except SelectionError:
            ours = frozenset()
        with manifest.project_root():  # path: selections glob the manifest's file layout
            theirs = select_unique_ids(select, exclude, "", None, raw)
        assert ours == {u for u in theirs if u in manifest.models}, (select, exclude)


@pytest.mark.parametrize(
    ("select", "exclude", "culprit", "problem"),
    [
        ("no_such_model", "", "no_such_model", "matches no model"),
        ("fct_orders+ no_such_model+", "", "no_such_model+", "matches no model"),
        ("tag:", "", "tag:", "has no value"),
        ("+", "", "+", "has no value"),
        ("", "", "", "empty"),
        ("   ", "", "", "empty"),
        ("fct_orders", "fct_orders", "fct_orders", "removes every selected model"),
        ("fct_orders+", "fct_order", "fct_order", "matches nothing"),
        ("nope:x", "", "nope:x", "not a valid method"),
        ("@fct_orders+", "", "@fct_orders+", "incompatible"),
        ("tag:no_such_tag", "", "tag:no_such_tag", "matches no model"),
    ],
)
def test_bad_selections_raise_an_error_naming_the_culprit(
    shop_manifest, select, exclude, culprit, problem
):
    with pytest.raises(SelectionError, match=problem) as raised:
        Selector(shop_manifest).resolve(select, exclude)
    assert raised.value.term == culprit


def test_targets_are_the_models_the_terms_name(shop_manifest):
    resolution = Selector(shop_manifest).resolve("+int_orders_enriched+ fct_sessions")
    assert {shop_manifest.name(m) for m in resolution.targets} == {
        "int_orders_enriched",
        "fct_sessions",
    }


@pytest.mark.parametrize(
    ("select", "exclude", "suggestion"),
    [
        ("int_order_enriched", "", "did you mean `int_orders_enriched`?"),
        ("+int_orders_enrichd+", "", "did you mean `+int_orders_enriched+`?"),
        ("fct_orders+", "fct_order", "did you mean `fct_orders`?"),
    ],
)
def test_a_typo_in_a_model_name_is_refused_with_the_close_match(
    shop_manifest, select, exclude, suggestion
):
    with pytest.raises(SelectionError) as raised:
        Selector(shop_manifest).resolve(select, exclude)
    assert str(raised.value).endswith(suggestion)
    assert len(str(raised.value).splitlines()) == 1


def test_planning_leaves_dbts_cli_unimported(shop_project):
    """dbt's selector reads two global flags; building all of dbt's flags imports its CLI
    (click, every command, the parser), a sixth of `rescue plan`'s time on a large manifest."""
    script = (
        "import sys\n"
        "from rescue_defs.planning.manifest import DbtManifest\n"
        "from rescue_defs.planning.plan import Planner, PlanRequest\n"
        f"manifest = DbtManifest.load({str(shop_project.manifest_path)!r})\n"
        "plan = Planner(manifest).plan(PlanRequest(select='+int_orders_enriched+'))\n"
        "assert plan.stages, plan\n"
        "print(sorted(m for m in sys.modules if m == 'dbt.cli' or m.startswith('dbt.cli.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_flags_set_without_dbts_cli_are_dbts_own_defaults():
    from argparse import Namespace

    from dbt.cli.flags import Flags
    from dbt.cli.main import cli
    from dbt.contracts.project import ProjectFlags
    from dbt.flags import get_flags, set_flags

    from rescue_defs.planning import dbt_flags
    from rescue_defs.planning.dbt_flags import DbtDefaultFlags

    dbts = Flags(cli.make_context("run", ["run"]), ProjectFlags())
    fast = DbtDefaultFlags()
    # making dbt's own to read one of them leaves the flags another part set (dagster-dbt's)
    theirs = Namespace(WHO="dagster-dbt")
    before = get_flags()
    set_flags(theirs)
    dbt_flags._dbt_cli_flags.cache_clear()
    try:
        assert fast.PRINTER_WIDTH == dbts.PRINTER_WIDTH
        assert get_flags() is theirs
    finally:
        set_flags(before)
    kept = [name for name in vars(DbtDefaultFlags) if not name.startswith("_")]
    assert kept
    for name in kept:
        assert getattr(fast, name) == getattr(dbts, name), name
    # any other flag is dbt's own, made when first read, and setting one changes only it
    assert fast.WARN_ERROR == dbts.WARN_ERROR
    assert fast.require_ref_searches_node_package_before_root is False
    assert not hasattr(fast, "no_such_flag")
    assert DbtDefaultFlags(PROFILES_DIR="/p").PROFILES_DIR == "/p"
    assert getattr(fast, "PROFILES_DIR", None) != "/p"
    assert isinstance(fast, Namespace)
