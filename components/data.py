"""KFP component: validate the run config, fix the run root, describe the data."""

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from components.settings import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prepare_data(run_config: str, generations: int, run_id: str, data: Output[Dataset],
                 report: Output[Markdown], reuse_root: bool = False, data_uri: str = "", teacher_model: str = "",
                 epochs: int = 0, retrain_epochs: int = 0, max_params: str = "", max_flops: str = "",
                 max_latency_ms: str = "") -> str:
    """Check the run config (``dna.generation.RunConfig`` JSON) before any work, resolve its run
    root (empty: ``$DNA_RUN_ROOT/<run id>``), take its lease, store the config as
    ``<root>/config.json`` (a root holding another config is refused unless ``reuse_root``) and
    describe the data set. The typed parameters (``data_uri`` ... ``max_latency_ms``; unset: "" or 0)
    win over ``run_config`` (:mod:`components.overrides`). Returns the resolved run config JSON
    that every later stage takes."""
    import dataclasses

    from components import _runtime as rt
    from components import reports
    from dna import storage
    from dna.data import class_names
    from dna.layout import run_files
    from dna.lease import check_stored_config

    rt.setup()
    cfg = rt.load_config(run_config, overrides={
        "data": data_uri, "teacher": teacher_model, "epochs": epochs, "retrain_epochs": retrain_epochs,
        "max_params": max_params, "max_flops": max_flops, "max_latency_ms": max_latency_ms})
    cfg = dataclasses.replace(cfg, root=rt.resolve_root(cfg.root, run_id), generations=generations)
    cfg.validate()                  # here, in the cluster, the URIs are opened too
    rt.hold_root(cfg.root)
    config_uri = run_files(cfg.root).config
    check_stored_config(config_uri, cfg.to_dict(), reuse_root, rt.log)
    storage.write_json(cfg.to_dict(), config_uri)
    classes = class_names(cfg.data)
    sizes = None
    if cfg.data.is_builtin:
        sizes = {"train": cfg.data.train_size, "val": cfg.data.val_size, "rating": cfg.data.rating_size}
    rt.log(f"run root {cfg.root}; data {cfg.data.uri}: {len(classes)} classes at {cfg.data.resolution} px")
    rt.write_json_artifact(data, {"data": cfg.data.to_dict(), "classes": classes, "sizes": sizes,
                                  "root": cfg.root},
                           uri=cfg.data.uri, num_classes=len(classes), resolution=cfg.data.resolution,
                           root=cfg.root)
    rt.publish_report(reports.data_report(cfg.data.to_dict(), classes, sizes, cfg.root), report, cfg,
                      None, "data.md")
    return rt.config_json(cfg)
