"""One rescue run of a few models against plain `dbt build` of the same models, alternating in
one run (medians): what a small rescue costs beyond dbt itself, in process (no run worker, no
sensor tick: the step's own overhead: resource set-up, dbt start, event writes, validation).

The bundled warehouse is loaded and built once; then, `--repeat` times each, alternating:
1. plain `dbt build --select <models>` (what the on-call engineer types);
2. `rescue_step_job` executed in process over the same models, as rescue_sensor requests it.

Run: .venv/bin/python bench/step_overhead_bench.py [--select "stg_customers"] [--repeat 3]
(prints medians and the ratio; no assertions)
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--select", default="stg_customers dim_products")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="step-bench-"))
    os.environ["RESCUE_DUCKDB_PATH"] = str(work / "warehouse" / "warehouse.duckdb")
    os.environ["PATH"] = f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"

    import dagster as dg

    from rescue_defs.assets.dbt import load_manifest, model_asset_keys
    from rescue_defs.definitions import build_definitions
    from rescue_defs.project import load_dbt_project
    from tests.helpers import materialize_all, raw_config

    project = load_dbt_project()
    defs = build_definitions(project)
    manifest = load_manifest(str(project.manifest_path), str(project.project_dir))
    keys = model_asset_keys(manifest)
    chosen = [keys[manifest.by_name[name][0]] for name in args.select.split()]
    plain, product = [], []
    (work / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(work / "home")) as instance:
        assert materialize_all(defs, instance, raw_config("2026-02-01")).success
        job = defs.resolve_job_def("rescue_step_job")
        for _ in range(args.repeat):
            began = time.perf_counter()
            subprocess.run(
                ["dbt", "build", "--quiet", "--select", *args.select.split()],
                cwd=project.project_dir,
                check=True,
            )
            plain.append(time.perf_counter() - began)
            began = time.perf_counter()
            result = job.execute_in_process(instance=instance, asset_selection=chosen)
            assert result.success
            product.append(time.perf_counter() - began)
    a, b = statistics.median(plain), statistics.median(product)
    print(
        f"\n{len(chosen)} model(s) ({args.select}), median of {args.repeat}, {os.cpu_count()} cores"
    )
    print(f"plain dbt build            {a:6.2f} s")
    print(f"rescue_step_job in process {b:6.2f} s  ({b / a:.2f}x, +{b - a:.2f} s)")


if __name__ == "__main__":
    main()
