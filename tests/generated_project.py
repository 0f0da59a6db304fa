"""A generated dbt project at the scale of the public ones: sources, staging, intermediate and
mart layers in lineage domains that cross now and then, table / view / incremental / ephemeral
models, tags, folders and tests. Deterministic for a seed; every model runs on DuckDB.

It covers, in every clone, what the public manifests in ../shared/manifests cover where they
are present (selection, planning, lineage groups at scale), and feeds the benchmarks.
"""

import random
from pathlib import Path

LAYERS = 6  # after staging: 1-3 intermediate, 4-6 marts
DOMAIN_SIZE = 60


def write_project(root: Path, models: int = 800, seed: int = 7, name: str = "big") -> Path:
    """Write the project under `root/name` and return its folder (not parsed)."""
    rng = random.Random(seed)
    project = root / name
    for folder in ("staging", "intermediate", "marts"):
        (project / "models" / folder).mkdir(parents=True, exist_ok=True)
    (project / "dbt_project.yml").write_text(
        f"name: {name}\nversion: '1.0.0'\nconfig-version: 2\nprofile: {name}\n"
        f"models:\n  {name}:\n    +materialized: table\n    staging:\n"
        "      +materialized: view\n"
    )
    (project / "profiles.yml").write_text(
        f"{name}:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        "      path: \"{{ env_var('RESCUE_DUCKDB_PATH') }}\"\n      threads: 2\n"
    )
    domains = max(1, models // DOMAIN_SIZE)
    sources = max(domains, models // 10)
    by_layer: list[list[tuple[str, int]]] = [[] for _ in range(LAYERS + 1)]
    source_yml = [
        "version: 2",
        "sources:",
        "  - name: raw",
        "    schema: raw",
        "    loaded_at_field: loaded_at",
        "    freshness:",
        "      warn_after: {count: 1, period: day}",
        "      error_after: {count: 2, period: day}",
        "    tables:",
    ]
    schema_yml = ["version: 2", "models:"]
    for i in range(sources):
        domain = i % domains
        source_yml.append(f"      - name: src_{i:04d}")
        model = f"stg_{i:04d}"
        by_layer[0].append((model, domain))
        (project / "models" / "staging" / f"{model}.sql").write_text(
            f"select id, d, v from {{{{ source('raw', 'src_{i:04d}') }}}}\n"
        )
        schema_yml += _tests(model, rng)
    remaining = models - sources
    for index in range(remaining):
        layer = 1 + index * LAYERS // remaining
        domain = rng.randrange(domains)
        folder = "intermediate" if layer <= 3 else "marts"
        model = f"{'int' if layer <= 3 else 'mart'}_d{domain:02d}_l{layer}_{index:04d}"
        parents = _parents(by_layer, layer, domain, rng)
        kind = rng.random()
        if kind < 0.08 and layer < LAYERS:
            config, where = "{{ config(materialized='ephemeral') }}\n", ""
        elif kind < 0.25:
            config = "{{ config(materialized='incremental', unique_key='id') }}\n"
            where = (
                "\n{% if is_incremental() %}where p0.d >= (select max(d) from {{ this }})"
                "{% endif %}"
            )
        else:
            config, where = "", ""
        tags = f"{{{{ config(tags=['domain_{domain:02d}', 'layer_{layer}']) }}}}\n"
        joins = "".join(
            f"\nleft join {{{{ ref('{p}') }}}} as p{k} using (id)"
            for k, p in enumerate(parents)
            if k
        )
        value = " + ".join(f"coalesce(p{k}.v, 0)" for k in range(len(parents)))
        (project / "models" / folder / f"{model}.sql").write_text(
            f"{config}{tags}select p0.id, p0.d, {value} as v\n"
            f"from {{{{ ref('{parents[0]}') }}}} as p0{joins}{where}\n"
        )
        by_layer[layer].append((model, domain))
        if not config.startswith("{{ config(materialized='ephemeral'"):
            schema_yml += _tests(model, rng)
    (project / "models" / "staging" / "_sources.yml").write_text("\n".join(source_yml) + "\n")
    (project / "models" / "_schema.yml").write_text("\n".join(schema_yml) + "\n")
    return project


def _parents(by_layer, layer: int, domain: int, rng: random.Random) -> list[str]:
    """1-3 parents from earlier layers: mostly the same domain, now and then another one."""
    earlier = [m for lay in by_layer[:layer] for m in lay]
    recent = [m for lay in by_layer[max(0, layer - 2) : layer] for m in lay] or earlier
    own = [name for name, d in recent if d == domain] or [name for name, _ in recent]
    chosen = {rng.choice(own)}
    for _ in range(rng.randrange(3)):
        pool = own if rng.random() < 0.85 else [name for name, _ in earlier]
        chosen.add(rng.choice(pool))
    return sorted(chosen)


def _tests(model: str, rng: random.Random) -> list[str]:
    if rng.random() < 0.5:
        return []
    return [
        f"  - name: {model}",
        "    columns:",
        "      - name: id",
        "        data_tests: [not_null]",
    ]
