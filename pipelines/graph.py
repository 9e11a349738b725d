"""The DAGs of the DNA / DNA+ pipelines, built from the components in ``components/``.

One generation (SPEC sections 4-6) is ``train_supernets -> rate_blocks -> search``; DNA+ adds
``scale_teacher`` between generations (the scaled, retrained search becomes the next teacher).
The last generation always ends in :func:`final_stage`, a sub-pipeline ``search -> retrain ->
transfer -> summarize`` whose tasks cache on their own. :func:`build_pipeline` unrolls the
generations with a Python loop at compile time.

Kubernetes settings of the tasks (kfp-kubernetes), as pipeline parameters where KFP allows:

- ``storage_secret``: the Secret whose keys become ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
  (the key names are fixed at compile time, :func:`components.settings.storage_secret_keys`);
- ConfigMap ``dna-settings`` (optional) -> ``DNA_RUN_ROOT``, ``DNA_S3_ENDPOINT``, ``AWS_REGION``,
  ``RAY_ADDRESS``;
- ``gpus`` / ``accelerator_type``: accelerator limit of the training tasks (teacher, retrain,
  scale, transfer); ``fanout_gpus``: of the supernet/rating tasks themselves (only for a fan-out
  on a Ray started inside their pod; with a Ray cluster the blocks get ``gpus_per_block`` there);
- ``node_selector`` (a JSON object) and ``tolerations`` (a JSON list) of the training tasks;
- ``pvc_name``: a PersistentVolumeClaim mounted at the compile-time ``pvc_mount`` path;
- ``<kind>_cpu_request`` / ``_cpu_limit`` / ``_memory_request`` / ``_memory_limit`` for the task
  kinds light, train and fanout; a memory-backed ``/dev/shm`` and retries on training and fan-out
  tasks, a timeout on every task (compile-time): :mod:`pipelines.task_settings`;
- every task (:func:`harden`): ``RAY_AUTH_TOKEN`` from Secret ``dna-ray-auth`` (optional), user
  1000 non-root, labels admitted by the Ray head's NetworkPolicy.

Typed run parameters (``data``, ``teacher``, ``epochs``, ``retrain_epochs``, ``max_params``,
``max_flops``, ``max_latency_ms``; :mod:`components.overrides`): set, they win over ``run_config``
in ``prepare_data``, whose resolved config every later task reads. ``generations`` is not one:
the DAG is unrolled at compile time (``--generations``).

``scale_retrain`` (DNA+): a JSON object of ``RetrainSettings`` fields for retraining the scaled
teachers only (empty: the run config's ``retrain``), e.g. fewer epochs than the final net.

``random_baseline`` (one per generation, a training task): a random architecture of the searched
net's params trained with that net's recipe (scaled like the next teacher before the last
generation). It hangs off the generation's search and teacher only, so the next generation's
supernets do not wait for it; the summary does. ``random_baseline: false`` in the run config
makes it a no-op.
"""


import dataclasses
import functools
import inspect
from dataclasses import dataclass, field

from kfp import dsl, kubernetes

from components import settings
from components.data import prepare_data
from components.dnapp import rate_pp, retrain_vit, train_pp_supernet
from components.overrides import TYPED, UNSET
from components.random_baseline import random_baseline
from components.rate import rate_blocks
from components.retrain import retrain
from components.scale import scale_teacher
from components.search import search
from components.summary import summarize
from components.supernet import train_supernets
from components.teacher import train_teacher
from components.transfer import transfer
from pipelines import task_settings as ts
from pipelines.task_settings import FANOUT, LIGHT, TRAIN

# Pipeline parameters besides run_config (name -> default). Every pipeline has all of them.
K8S_PARAMETERS: dict[str, object] = {
    "gpus": 0,
    "accelerator_type": "nvidia.com/gpu",
    "gpus_per_block": 0,
    "fanout_gpus": 0,
    "max_concurrent_blocks": 0,
    "ray_address": "",
    "storage_secret": settings.STORAGE_SECRET,
    "node_selector": {},
    "tolerations": [],
    "pvc_name": "",
    "scale_retrain": "",
    **ts.RESOURCE_PARAMETERS,
}
# The typed run parameters (name -> unset value); their defaults come from the run config.
RUN_PARAMETERS: dict[str, object] = dict(UNSET)


@dataclass
class BuildOptions:
    """Compile-time settings (they change the DAG, not a parameter value)."""

    image: str | None = None                 # None: the components' DNA_IMAGE
    storage_keys: dict[str, str] = field(
        default_factory=lambda: settings.storage_secret_keys(settings.STORAGE_SECRET))
    config_map: str = settings.SETTINGS_CONFIG_MAP
    pvc_mount: str | None = None             # mount the pvc_name parameter here (None: no PVC)
    timeouts: dict[str, int] = field(default_factory=lambda: dict(ts.TIMEOUT_DEFAULTS))  # kind -> seconds
    retries: int = ts.RETRIES                # of training and fan-out tasks
    shm_size: str | None = ts.SHM_SIZE       # size limit of their /dev/shm (None: no limit)

    @classmethod
    def from_args(cls, args) -> "BuildOptions":
        """The compile-time settings of a pipeline command line (UsageError: a bad value)."""
        from pipelines.flags import positive_int

        positive_int(getattr(args, "retries", None), "--retries", low=0)
        return cls(image=args.image, pvc_mount=args.pvc_mount if args.pvc else None,
                   timeouts=ts.parse_task_timeouts(getattr(args, "task_timeout", None) or []),
                   retries=ts.RETRIES if getattr(args, "retries", None) is None else args.retries,
                   shm_size=ts.parse_shm_size(getattr(args, "shm_size", None)))

    def with_secret(self, secret_name: str) -> "BuildOptions":
        return dataclasses.replace(self, storage_keys=settings.storage_secret_keys(secret_name))


class Params:
    """The pipeline parameters (channels) handed to every task of one (sub-)pipeline."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def as_kwargs(self) -> dict:
        return dict(self.__dict__)

    def resources(self, kinds=ts.KINDS) -> dict:
        """The resource parameters of ``kinds`` (name -> channel), to hand to a sub-pipeline."""
        return {ts.resource_parameter(k, f): getattr(self, ts.resource_parameter(k, f))
                for k in kinds for f in ts.RESOURCE_FIELDS}


def with_parameters(extra: dict[str, tuple[type, object]]):
    """Add keyword parameters (name -> (type, default)) to a pipeline function's signature, as
    KFP reads it (``inspect.signature``): the body gets them in ``**kw``. Keeps the resource and
    typed parameters, which are many and the same everywhere, in one list
    (:mod:`pipelines.task_settings`, :mod:`components.overrides`)."""
    def wrap(func):
        sig = inspect.signature(func)
        params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=typ)
                   for name, (typ, default) in extra.items()]

        new_sig = sig.replace(parameters=params)

        @functools.wraps(func)
        def pipeline(*args, **kw):      # KFP passes every parameter positionally, in signature order
            return func(**dict(zip(new_sig.parameters, args, strict=False)), **kw)

        del pipeline.__wrapped__
        pipeline.__signature__ = new_sig
        return pipeline

    return wrap


def resource_inputs(kinds=ts.KINDS) -> dict[str, tuple[type, object]]:
    return {ts.resource_parameter(k, f): (str, ts.RESOURCE_DEFAULTS[k][f]) for k in kinds for f in ts.RESOURCE_FIELDS}


RUN_INPUTS: dict[str, tuple[type, object]] = {name: (TYPED[name][0], UNSET[name]) for name in TYPED}
# prepare_data's inputs of the typed run parameters (two names are taken by its outputs/meaning)
PREPARE_INPUTS = {"data": "data_uri", "teacher": "teacher_model"}


def typed_inputs(kw: dict) -> dict:
    """prepare_data's keyword arguments of the typed run parameters in a pipeline's ``kw``."""
    return {PREPARE_INPUTS.get(name, name): kw[name] for name in TYPED}


def harden(task):
    """What kfp-kubernetes can set for a locked-down cluster (k8s/README.md says what it cannot):
    the Ray token for the Jobs API, the non-root user, and the labels the head's NetworkPolicy
    admits."""
    kubernetes.use_secret_as_env(task, secret_name=settings.RAY_AUTH_SECRET, optional=True,
                                 secret_key_to_env={settings.RAY_AUTH_SECRET_KEY: settings.RAY_AUTH_TOKEN_ENV})
    kubernetes.set_security_context(task, run_as_user=settings.TASK_UID, run_as_group=settings.TASK_UID,
                                    run_as_non_root=True)
    for key, value in settings.TASK_POD_LABELS.items():
        kubernetes.add_pod_label(task, key, value)
    return task


def configure(task, p: Params, opts: BuildOptions, kind: str = LIGHT, gpus=None):
    """Image, storage credentials, settings, PVC, the pod settings of its ``kind``
    (:mod:`pipelines.task_settings`); node placement for training and fan-out tasks, GPUs."""
    if opts.image:
        task.set_container_image(opts.image)
    kubernetes.use_secret_as_env(task, secret_name=p.storage_secret, secret_key_to_env=opts.storage_keys,
                                 optional=True)
    kubernetes.use_config_map_as_env(task, config_map_name=opts.config_map,
                                     config_map_key_to_env=settings.SETTINGS_ENV, optional=True)
    harden(task)
    # the run's id (the pod label KFP sets) joins every task to the run root's lease (dna.lease)
    kubernetes.use_field_path_as_env(task, env_name="DNA_RUN_ID", field_path="metadata.labels['pipeline/runid']")
    if opts.pvc_mount:
        kubernetes.mount_pvc(task, pvc_name=p.pvc_name, mount_path=opts.pvc_mount)
    ts.apply(task, kind, p.resources((kind,)), opts.timeouts, opts.retries, opts.shm_size)
    if kind != LIGHT:
        kubernetes.add_node_selector_json(task, p.node_selector)
        kubernetes.add_toleration_json(task, p.tolerations)
    if gpus is not None:
        task.set_accelerator_type(p.accelerator_type)
        task.set_accelerator_limit(gpus)
    return task


def _final_tasks(run_config, generation, scores, teacher, p: Params, opts: BuildOptions, pp_config=None):
    """search -> retrain -> transfer -> summarize; every task reads what it consumes from the
    outputs wired in here (a new stage is one component and one line)."""
    s = configure(search(run_config=run_config, generation=generation, scores=scores), p, opts)
    s.set_display_name("search")
    arch = s.outputs["arch"]
    if pp_config is None:
        r = retrain(run_config=run_config, generation=generation, arch=arch, teacher=teacher)
    else:
        r = retrain_vit(run_config=run_config, pp_config=pp_config, generation=generation, arch=arch)
    configure(r, p, opts, kind=TRAIN, gpus=p.gpus)
    r.set_display_name("retrain")
    rb = None
    if pp_config is None:       # a random cell architecture trained like the final net
        rb = configure(random_baseline(run_config=run_config, generation=generation, scale_retrain="", arch=arch,
                                       teacher=teacher), p, opts, kind=TRAIN, gpus=p.gpus)
        rb.set_display_name("random baseline (same params, same recipe)")
    t = configure(transfer(run_config=run_config, generation=generation, arch=arch, model=r.outputs["model"]),
                  p, opts, kind=TRAIN, gpus=p.gpus)
    t.set_display_name("transfer (seg, det)")
    summary = configure(summarize(run_config=run_config, arch=arch, model=r.outputs["model"],
                                  transfer=t.outputs["results"]), p, opts)
    if rb is not None:
        summary.after(rb)
    summary.set_display_name("summary")
    return summary.outputs["summary"]


FINAL_KINDS = (LIGHT, TRAIN)        # the kinds of the final stage's tasks
PP_KINDS = (LIGHT, TRAIN)           # DNA++ has no fan-out tasks


def make_final_stage(opts: BuildOptions):
    """The last stage of every pipeline: search -> retrain -> transfer -> summarize."""

    @dsl.pipeline(name="final-stage",
                  description="search -> retrain -> transfer (seg, det) -> summary of the run")
    @with_parameters(resource_inputs(FINAL_KINDS))
    def final_stage(run_config: str, generation: int, scores: dsl.Input[dsl.Dataset],
                    teacher: dsl.Input[dsl.Model], gpus: int, accelerator_type: str, storage_secret: str,
                    node_selector: dict, tolerations: list, pvc_name: str, **kw) -> dsl.Artifact:
        p = Params(gpus=gpus, accelerator_type=accelerator_type, storage_secret=storage_secret,
                   node_selector=node_selector, tolerations=tolerations, pvc_name=pvc_name, **kw)
        return _final_tasks(run_config, generation, scores, teacher, p, opts)

    return final_stage


def make_vit_final_stage(opts: BuildOptions):
    """DNA++'s last stage: search -> ViT retrain (DeiT recipe) -> transfer -> summarize."""

    @dsl.pipeline(name="final-stage-vit",
                  description="search -> ViT retrain -> transfer (seg, det) -> summary of the run")
    @with_parameters(resource_inputs(FINAL_KINDS))
    def final_stage(run_config: str, pp_config: str, generation: int, scores: dsl.Input[dsl.Dataset],
                    gpus: int, accelerator_type: str, storage_secret: str, node_selector: dict,
                    tolerations: list, pvc_name: str, **kw) -> dsl.Artifact:
        p = Params(gpus=gpus, accelerator_type=accelerator_type, storage_secret=storage_secret,
                   node_selector=node_selector, tolerations=tolerations, pvc_name=pvc_name, **kw)
        return _final_tasks(run_config, generation, scores, None, p, opts, pp_config=pp_config)

    return final_stage


def build_pipeline(name: str, generations: int, opts: BuildOptions | None = None, description: str = ""):
    """A pipeline of ``generations`` DNA generations (1: DNA; more: DNA+), unrolled at compile
    time. Parameters: ``run_config`` (RunConfig JSON) and :data:`K8S_PARAMETERS`."""
    from dna.config_check import MAX_GENERATIONS

    if not isinstance(generations, int) or isinstance(generations, bool) or not 1 <= generations <= MAX_GENERATIONS:
        raise ValueError(f"generations={generations!r}: expected an integer in 1..{MAX_GENERATIONS}")
    opts = opts or BuildOptions()
    final_stage = make_final_stage(opts)

    @dsl.pipeline(name=name, description=description or f"DNA with {generations} generation(s)")
    @with_parameters({**RUN_INPUTS, **resource_inputs()})
    def pipeline(
        run_config: str = "{}",
        gpus: int = 0,
        accelerator_type: str = "nvidia.com/gpu",
        gpus_per_block: int = 0,
        fanout_gpus: int = 0,
        max_concurrent_blocks: int = 0,
        ray_address: str = "",
        storage_secret: str = settings.STORAGE_SECRET,
        node_selector: dict = {},  # noqa: B006 (KFP reads the default; never mutated)
        tolerations: list = [],  # noqa: B006
        pvc_name: str = "",
        scale_retrain: str = "",
        reuse_root: bool = False,
        **kw,
    ) -> dsl.Artifact:
        p = Params(gpus=gpus, accelerator_type=accelerator_type, storage_secret=storage_secret,
                   node_selector=node_selector, tolerations=tolerations, pvc_name=pvc_name,
                   **{k: v for k, v in kw.items() if k not in TYPED})
        prep = configure(prepare_data(run_config=run_config, generations=generations,
                                      run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, reuse_root=reuse_root,
                                      **typed_inputs(kw)), p, opts)
        prep.set_display_name("prepare data")
        cfg = prep.outputs["Output"]
        t0 = configure(train_teacher(run_config=cfg, generation=0, data=prep.outputs["data"]), p, opts,
                       kind=TRAIN, gpus=gpus)
        t0.set_display_name("gen 0: teacher")
        teacher = t0.outputs["teacher"]
        result = None
        baselines = []      # the summary (final stage) waits for them; the next generation does not
        for g in range(generations):
            sn = configure(train_supernets(run_config=cfg, generation=g, teacher=teacher,
                                           gpus_per_block=gpus_per_block,
                                           max_concurrent_blocks=max_concurrent_blocks, ray_address=ray_address),
                           p, opts, kind=FANOUT, gpus=fanout_gpus)
            sn.set_display_name(f"gen {g}: train block supernets (Ray)")
            rate = configure(rate_blocks(run_config=cfg, generation=g, teacher=teacher,
                                         supernets=sn.outputs["supernets"], gpus_per_block=gpus_per_block,
                                         max_concurrent_blocks=max_concurrent_blocks, ray_address=ray_address),
                             p, opts, kind=FANOUT, gpus=fanout_gpus)
            rate.set_display_name(f"gen {g}: rate paths (Ray)")
            if g < generations - 1:
                s = configure(search(run_config=cfg, generation=g, scores=rate.outputs["scores"]), p, opts)
                s.set_display_name(f"gen {g}: search")
                sc = configure(scale_teacher(run_config=cfg, generation=g, scale_retrain=scale_retrain,
                                             arch=s.outputs["arch"], teacher=teacher), p, opts, kind=TRAIN, gpus=gpus)
                sc.set_display_name(f"gen {g}: scale + retrain -> teacher of gen {g + 1}")
                rb = configure(random_baseline(run_config=cfg, generation=g, scale_retrain=scale_retrain,
                                               arch=s.outputs["arch"], teacher=teacher), p, opts, kind=TRAIN,
                               gpus=gpus)
                rb.set_display_name(f"gen {g}: random baseline (same params, scaled + retrained the same)")
                baselines.append(rb)
                teacher = sc.outputs["scaled"]
            else:
                fin = final_stage(run_config=cfg, generation=g, scores=rate.outputs["scores"], teacher=teacher,
                                  gpus=gpus, accelerator_type=accelerator_type, storage_secret=storage_secret,
                                  node_selector=node_selector, tolerations=tolerations, pvc_name=pvc_name,
                                  **p.resources(FINAL_KINDS))
                fin.set_display_name(f"gen {g}: final stage (search, retrain, transfer)")
                for rb in baselines:
                    fin.after(rb)
                result = fin.output
        return result

    return pipeline


def build_pp_pipeline(name: str, opts: BuildOptions | None = None, description: str = ""):
    """DNA++ (SPEC section 8): one job trains the ViT supernet of every block jointly with its CNN
    teacher (no labels), rating, then the ViT final stage. Parameters: ``run_config`` (RunConfig
    JSON with a ViT space), ``pp_config`` (see :mod:`components.dnapp`) and the cluster resources."""
    opts = opts or BuildOptions()
    final_stage = make_vit_final_stage(opts)

    @dsl.pipeline(name=name, description=description or "DNA++: self-supervised ViT search with a CNN teacher")
    @with_parameters({**RUN_INPUTS, **resource_inputs(PP_KINDS)})
    def pipeline(
        run_config: str = "{}",
        pp_config: str = "{}",
        gpus: int = 0,
        accelerator_type: str = "nvidia.com/gpu",
        storage_secret: str = settings.STORAGE_SECRET,
        node_selector: dict = {},  # noqa: B006 (KFP reads the default; never mutated)
        tolerations: list = [],  # noqa: B006
        pvc_name: str = "",
        reuse_root: bool = False,
        **kw,
    ) -> dsl.Artifact:
        p = Params(gpus=gpus, accelerator_type=accelerator_type, storage_secret=storage_secret,
                   node_selector=node_selector, tolerations=tolerations, pvc_name=pvc_name,
                   **{k: v for k, v in kw.items() if k not in TYPED})
        prep = configure(prepare_data(run_config=run_config, generations=1, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                      reuse_root=reuse_root, **typed_inputs(kw)), p, opts)
        prep.set_display_name("prepare data")
        cfg = prep.outputs["Output"]
        sn = configure(train_pp_supernet(run_config=cfg, pp_config=pp_config, data=prep.outputs["data"]), p, opts,
                       kind=TRAIN, gpus=gpus)
        sn.set_display_name("DNA++: teacher + ViT supernet (all blocks, one job)")
        rate = configure(rate_pp(run_config=cfg, supernet=sn.outputs["supernet"]), p, opts, kind=TRAIN, gpus=gpus)
        rate.set_display_name("rate paths")
        fin = final_stage(run_config=cfg, pp_config=pp_config, generation=0, scores=rate.outputs["scores"],
                          gpus=gpus, accelerator_type=accelerator_type,
                          storage_secret=storage_secret, node_selector=node_selector, tolerations=tolerations,
                          pvc_name=pvc_name, **p.resources(FINAL_KINDS))
        fin.set_display_name("final stage (search, retrain, transfer)")
        return fin.output

    return pipeline
