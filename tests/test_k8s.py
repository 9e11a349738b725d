"""The Kubernetes manifests (k8s/) and the image recipe (docker/), checked offline in seconds.

Every kustomization under k8s/ is rendered with `kubectl kustomize`; core kinds are validated
with kubernetes-validate; Ray kinds against a hand-written list of the KubeRay fields the
manifests rely on (everywhere) and, where KubeRay's CRDs are at hand (not in the repository:
../shared/schemas/kuberay/ beside it or $DNA_KUBERAY_SCHEMAS), their openAPIV3Schema. Then the security and wiring rules the
project relies on: restricted, read-only-root pods; Ray token authentication from a Secret; a
NetworkPolicy that admits only the pipeline's pods to the head; RBAC cut to what runs in the
task pods, bound to the project's own account; no credentials in files; one image, by version.
The compiled KFP pipeline is checked against the same names (labels, Secret, account, image).
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
DOCKER = REPO / "docker"
# DNA_KUBERAY_SCHEMAS: another place for them (e.g. when the checkout is a git worktree).
KUBERAY_SCHEMAS = Path(
    os.environ.get("DNA_KUBERAY_SCHEMAS")
    or Path(__file__).resolve().parents[1].parent / "shared" / "schemas" / "kuberay"
)

# Kubernetes version the core kinds are validated against (kubernetes-validate bundles 1.25+).
K8S_VERSION = "1.32.0"

EXPECTED = [
    "base",
    "overlays/kfp-bundled-store",
    "overlays/external-s3",
    "examples/recurring-run",
]
OVERLAYS = ["overlays/kfp-bundled-store", "overlays/external-s3"]
RAY_KINDS = {"RayCluster": "rayclusters", "RayJob": "rayjobs", "RayCronJob": "raycronjobs"}
SETTINGS_KEYS = {"DNA_IMAGE", "DNA_RUN_ROOT", "DNA_S3_ENDPOINT", "AWS_REGION", "RAY_ADDRESS"}
CREDENTIAL_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "RAY_AUTH_TOKEN"}
RAY_AUTH = ("dna-ray-auth", "auth_token")     # the token Secret and KubeRay's key in it
HEAD_PORTS = {"gcs": 6379, "dashboard": 8265, "client": 10001}


def _kustomizations() -> list[str]:
    found = {p.parent.relative_to(K8S).as_posix() for p in K8S.rglob("kustomization.yaml")}
    return sorted(found | set(EXPECTED))


KUSTOMIZATIONS = _kustomizations()


# ---------------------------------------------------------------------------------------------
# rendering


@functools.cache
def _render(rel: str) -> tuple[dict, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found: install kubectl (it bundles kustomize) to render k8s/")
    proc = subprocess.run(
        [kubectl, "kustomize", str(K8S / rel)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"kubectl kustomize k8s/{rel} failed:\n{proc.stderr}"
    docs = tuple(d for d in yaml.safe_load_all(proc.stdout) if d)
    assert docs, f"k8s/{rel} rendered no objects"
    return docs


def _docs(rel: str) -> list[dict]:
    return copy.deepcopy(list(_render(rel)))


def _one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _is_ray(doc: dict) -> bool:
    return str(doc.get("apiVersion", "")).startswith("ray.io/")


def _pod_specs(node, path="$"):
    """Every pod spec (a mapping with a `containers` list) anywhere in a document."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield path, node
        for key, value in node.items():
            yield from _pod_specs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _pod_specs(value, f"{path}[{i}]")


def _containers(spec: dict) -> list[dict]:
    return list(spec.get("containers") or []) + list(spec.get("initContainers") or [])


def test_expected_kustomizations_exist():
    for rel in EXPECTED:
        assert (K8S / rel / "kustomization.yaml").is_file(), f"missing k8s/{rel}/kustomization.yaml"
    assert (K8S / "README.md").is_file()


# ---------------------------------------------------------------------------------------------
# schema validation


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_core_kinds_validate(rel):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    core = [d for d in _docs(rel) if not _is_ray(d)]
    problems = []
    for doc in core:
        where = f"k8s/{rel}: {doc['kind']}/{doc['metadata'].get('name')}"
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path) or "<root>"
            problems.append(f"{where} invalid for Kubernetes {K8S_VERSION}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{where}: {exc.message}")
    assert not problems, "\n".join(problems)


def _strict(schema):
    """An OpenAPI v3 CRD schema as a JSON Schema that, like the API server's pruning with
    strict field validation, rejects unknown fields; `nullable` becomes a JSON Schema type."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def _ray_validator(kind: str, version: str):
    jsonschema = pytest.importorskip("jsonschema")
    if not KUBERAY_SCHEMAS.is_dir():
        pytest.skip(
            f"KubeRay CRD schemas not found at {KUBERAY_SCHEMAS}: they are not part of the "
            "repository. Get ray.io_rayclusters.yaml, ray.io_rayjobs.yaml and ray.io_raycronjobs.yaml "
            "from github.com/ray-project/kuberay (ray-operator/config/crd/bases of a current "
            "release) into a folder and set DNA_KUBERAY_SCHEMAS=FOLDER (default: "
            "../shared/schemas/kuberay beside the repository). "
            "test_ray_kinds_use_only_known_kuberay_fields checks the fields we use without them."
        )
    crd_file = KUBERAY_SCHEMAS / f"ray.io_{RAY_KINDS[kind]}.yaml"
    assert crd_file.is_file(), f"no CRD for {kind}: {crd_file}"
    crd = yaml.safe_load(crd_file.read_text())
    assert crd["spec"]["names"]["kind"] == kind
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    assert version in versions, f"{kind} CRD serves {sorted(versions)}, not {version}"
    assert versions[version].get("served", False), f"{kind} {version} is not served"
    schema = _strict(versions[version]["schema"]["openAPIV3Schema"])
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_ray_kinds_validate_against_kuberay_crds(rel):
    ray_docs = [d for d in _docs(rel) if _is_ray(d)]
    if not ray_docs:
        pytest.skip(f"k8s/{rel} has no Ray objects")
    for doc in ray_docs:
        assert doc["kind"] in RAY_KINDS, f"unexpected Ray kind {doc['kind']} in k8s/{rel}"
        assert doc["apiVersion"] == "ray.io/v1", f"{doc['kind']}: use ray.io/v1"
        validator = _ray_validator(doc["kind"], doc["apiVersion"].split("/", 1)[1])
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        msgs = [
            f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors
        ]
        assert not msgs, f"k8s/{rel}: {doc['kind']}/{doc['metadata']['name']}:\n" + "\n".join(
            msgs[:20]
        )


# The KubeRay (ray.io/v1) fields that k8s/ relies on and their types, written by hand (checked
# against KubeRay's CRDs of 2026-08-19): not a copy of the CRDs, only what we use, so
# that a misspelled or moved field fails in any clone. POD: a core PodTemplateSpec, CORE: core
# container fields (EnvVar list, ResourceRequirements, SecurityContext, VolumeMount list), both
# validated with kubernetes-validate; MAP: free string keys. A new field: check it against
# KubeRay's CRD, then add it here.
POD, CORE, MAP = "PodTemplateSpec", "container fields", "map"
KUBERAY_FIELDS_WE_USE: dict[str, dict] = {
    "RayCluster": {"spec": {
        "rayVersion": str,
        "enableInTreeAutoscaling": bool,
        "authOptions": {"mode": str, "secretName": str},
        "autoscalerOptions": {"env": CORE, "resources": CORE, "securityContext": CORE, "volumeMounts": CORE,
                              "idleTimeoutSeconds": int, "imagePullPolicy": str, "upscalingMode": str},
        "headGroupSpec": {"rayStartParams": MAP, "serviceType": str, "template": POD},
        "workerGroupSpecs": [{"groupName": str, "replicas": int, "minReplicas": int, "maxReplicas": int,
                              "rayStartParams": MAP, "template": POD}],
    }},
    "RayCronJob": {"spec": {
        "schedule": str,
        "timeZone": str,
        "jobTemplate": {"clusterSelector": MAP, "submissionMode": str, "entrypoint": str,
                        "entrypointNumGpus": (int, float), "activeDeadlineSeconds": int, "backoffLimit": int,
                        "submitterConfig": {"backoffLimit": int}, "submitterPodTemplate": POD},
    }},
}
OBJECT_META = {"name": str, "namespace": str, "labels": MAP, "annotations": MAP}


def _known_field_problems(node, shape, path: str, pods: list, cores: dict) -> list[str]:
    """Where ``node`` leaves :data:`KUBERAY_FIELDS_WE_USE`; collects pod templates and core parts."""
    if shape == POD:
        pods.append((path, node))
        return []
    if shape == CORE:
        cores[path] = node
        return []
    if shape == MAP:
        bad = [k for k, v in (node or {}).items() if not isinstance(v, str)]
        return [f"{path}.{k}: expected a string value" for k in bad] if isinstance(node, dict) else [
            f"{path}: expected a mapping"]
    if isinstance(shape, list):
        if not isinstance(node, list):
            return [f"{path}: expected a list"]
        return [p for i, item in enumerate(node) for p in _known_field_problems(item, shape[0], f"{path}[{i}]", pods, cores)]
    if isinstance(shape, dict):
        if not isinstance(node, dict):
            return [f"{path}: expected a mapping"]
        out = []
        for key, value in node.items():
            if key not in shape:
                out.append(f"{path}.{key}: not a KubeRay field k8s/ is known to use (misspelled? else check it "
                           "against KubeRay's CRD and add it to KUBERAY_FIELDS_WE_USE)")
            else:
                out += _known_field_problems(value, shape[key], f"{path}.{key}", pods, cores)
        return out
    if isinstance(node, bool) and shape is not bool:
        return [f"{path}: {node!r} is a boolean, expected {shape}"]
    return [] if isinstance(node, shape) else [f"{path}: {node!r} is not of type {shape}"]


def _ray_field_problems(doc: dict) -> list[str]:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    pods: list = []
    cores: dict = {}
    top = {"apiVersion": str, "kind": str, "metadata": OBJECT_META, **KUBERAY_FIELDS_WE_USE[doc["kind"]]}
    problems = _known_field_problems(doc, top, doc["kind"], pods, cores)
    checks = [(path, {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": pod})
              for path, pod in pods]
    if cores:
        parts = {path.rsplit(".", 1)[1]: v for path, v in cores.items()}
        checks.append((", ".join(cores), {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"},
                                          "spec": {"containers": [{"name": "t", "image": "t", **parts}]}}))
    for path, obj in checks:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{path}: {'.'.join(str(p) for p in exc.path)}: {exc.message}")
    return problems


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_ray_kinds_use_only_known_kuberay_fields(rel):
    """Runs without KubeRay's CRDs: every field of our Ray objects is one we know KubeRay has."""
    ray_docs = [d for d in _docs(rel) if _is_ray(d)]
    if not ray_docs:
        pytest.skip(f"k8s/{rel} has no Ray objects")
    for doc in ray_docs:
        assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] in KUBERAY_FIELDS_WE_USE, doc["kind"]
        problems = _ray_field_problems(doc)
        assert not problems, f"k8s/{rel}: {doc['kind']}/{doc['metadata']['name']}:\n" + "\n".join(problems)


def test_known_field_check_catches_mistakes():
    cluster = _one(_docs("base"), "RayCluster", "dna-ray")
    cluster["spec"]["workerGroupSpecs"][0]["maxReplica"] = 2                                  # KubeRay's field
    cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "x"  # a pod's
    cluster["spec"]["autoscalerOptions"]["resources"]["limitz"] = {}                          # a core part's
    cluster["spec"]["enableInTreeAutoscaling"] = "true"                                       # a type
    text = "\n".join(_ray_field_problems(cluster))
    assert "workerGroupSpecs[0].maxReplica: not a KubeRay field" in text
    assert "headGroupSpec.template" in text and "imagePullPolicyy" in text
    assert "limitz" in text and "enableInTreeAutoscaling: 'true' is not of type" in text


def test_strict_crd_schema_rejects_unknown_fields():
    validator = _ray_validator("RayCluster", "v1")
    doc = _one(_docs("base"), "RayCluster", "dna-ray")
    doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "x"
    assert list(validator.iter_errors(doc)), "a misspelled field must fail validation"


# ---------------------------------------------------------------------------------------------
# security


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_every_pod_is_non_root_and_drops_capabilities(rel):
    docs = _docs(rel)
    specs = [(d, p, s) for d in docs for p, s in _pod_specs(d)]
    if any(d["kind"] in ("RayCluster", "RayCronJob", "RayJob") for d in docs):
        assert specs, f"k8s/{rel}: no pod specs found in its workloads"
    for doc, path, spec in specs:
        where = f"k8s/{rel}: {doc['kind']}/{doc['metadata']['name']} {path}"
        pod_sc = spec.get("securityContext") or {}
        assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True, where
        for c in _containers(spec):
            sc = c.get("securityContext") or {}
            cwhere = f"{where} container {c.get('name')}"
            assert (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))) is True, (
                f"{cwhere}: runAsNonRoot"
            )
            uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
            assert isinstance(uid, int) and uid != 0, f"{cwhere}: runAsUser must be non-zero"
            assert sc.get("allowPrivilegeEscalation") is False, (
                f"{cwhere}: allowPrivilegeEscalation"
            )
            assert sc.get("privileged") is not True, f"{cwhere}: privileged"
            drop = (sc.get("capabilities") or {}).get("drop") or []
            assert "ALL" in drop, f"{cwhere}: must drop ALL capabilities"
            assert not (sc.get("capabilities") or {}).get("add"), f"{cwhere}: adds capabilities"
            seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
            assert seccomp in ("RuntimeDefault", "Localhost"), f"{cwhere}: seccompProfile"
            assert sc.get("readOnlyRootFilesystem") is True, f"{cwhere}: readOnlyRootFilesystem"
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
            volumes = {v["name"]: v for v in spec.get("volumes") or []}
            for path in WRITABLE_DIRS:
                assert path in mounts, f"{cwhere}: no writable {path} (read-only root)"
                assert "emptyDir" in volumes.get(mounts[path], {}), f"{cwhere}: {path} not an emptyDir"
            res = c.get("resources") or {}
            assert res.get("requests") and res.get("limits"), f"{cwhere}: requests and limits"
            assert "memory" in res["limits"], f"{cwhere}: memory limit"


# Where Ray, Python and the caches write (HOME=/home/dna in docker/Dockerfile).
WRITABLE_DIRS = ("/tmp", "/home/dna")


def test_gpu_workers_have_shared_memory():
    rc = _one(_docs("base"), "RayCluster", "dna-ray")
    for group in rc["spec"]["workerGroupSpecs"]:
        spec = group["template"]["spec"]
        (c,) = spec["containers"]
        shm = [m["name"] for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        assert shm, "DataLoader workers need a writable /dev/shm"
        (vol,) = [v for v in spec["volumes"] if v["name"] == shm[0]]
        assert vol["emptyDir"]["medium"] == "Memory"


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_ray_autoscaler_sidecar_is_restricted(rel):
    clusters = [d for d in _docs(rel) if d["kind"] == "RayCluster"]
    if not clusters:
        pytest.skip(f"k8s/{rel} has no RayCluster")
    for rc in clusters:
        if not rc["spec"].get("enableInTreeAutoscaling"):
            continue
        opts = rc["spec"].get("autoscalerOptions") or {}
        sc = opts.get("securityContext") or {}
        assert sc.get("runAsNonRoot") is True and sc.get("allowPrivilegeEscalation") is False
        assert "ALL" in (sc.get("capabilities") or {}).get("drop", [])
        assert sc.get("readOnlyRootFilesystem") is True
        assert (sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault"
        # The sidecar runs in the head pod: its writable mounts are the head pod's emptyDirs.
        head_volumes = {
            v["name"]: v for v in rc["spec"]["headGroupSpec"]["template"]["spec"]["volumes"]
        }
        mounts = {m["mountPath"]: m["name"] for m in opts.get("volumeMounts") or []}
        for path in WRITABLE_DIRS:
            assert "emptyDir" in head_volumes[mounts[path]], f"autoscaler: {path}"


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_credentials_only_by_reference(rel):
    docs = _docs(rel)
    assert not [d for d in docs if d["kind"] == "Secret"], (
        f"k8s/{rel} renders a Secret: credentials must be created out of band"
    )
    for doc in docs:
        for _, spec in _pod_specs(doc):
            for c in _containers(spec):
                for env in c.get("env") or []:
                    if env["name"] in CREDENTIAL_ENV:
                        assert "value" not in env and "secretKeyRef" in (
                            env.get("valueFrom") or {}
                        ), f"k8s/{rel}: {env['name']} must come from a secretKeyRef"
        if doc["kind"] == "ConfigMap":
            for key in doc.get("data") or {}:
                assert key not in CREDENTIAL_ENV, f"k8s/{rel}: {key} in a ConfigMap"


# Placeholders and key *names* that may follow `AWS_SECRET_ACCESS_KEY=` and the like.
_ALLOWED_VALUES = {
    "",
    "...",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "accesskey",
    "secretkey",
}
_ASSIGNMENT = re.compile(
    r"(?i)\b(aws_access_key_id|aws_secret_access_key|aws_session_token|access_?key|secret_?key"
    r"|password|accesskey|secretkey)\s*[:=]\s*[\"']?([^\s\"'#,}]*)"
)
_KNOWN_SECRETS = [
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),  # AWS secret key shape
    re.compile(r"(?i)\bminio(123|admin)\b"),  # MinIO / KFP default credentials
]


def _committed_k8s_files() -> list[Path]:
    ignore = _k8s_gitignore_patterns()
    files = []
    for path in sorted(K8S.rglob("*")):
        if not path.is_file():
            continue
        if any(fnmatch.fnmatch(path.name, pat) for pat in ignore["ignore"]) and not any(
            fnmatch.fnmatch(path.name, pat) for pat in ignore["keep"]
        ):
            continue  # local, git-ignored (e.g. storage.env): never committed
        files.append(path)
    return files


def _k8s_gitignore_patterns() -> dict[str, list[str]]:
    lines = (K8S / ".gitignore").read_text().splitlines() if (K8S / ".gitignore").is_file() else []
    lines = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    return {
        "ignore": [ln for ln in lines if not ln.startswith("!")],
        "keep": [ln[1:] for ln in lines if ln.startswith("!")],
    }


def test_no_literal_credentials_in_k8s_files():
    files = _committed_k8s_files()
    assert files
    problems = []
    for path in files:
        text = path.read_text(errors="replace")
        rel = path.relative_to(REPO)
        for lineno, line in enumerate(text.splitlines(), 1):
            for m in _ASSIGNMENT.finditer(line):
                if m.group(2) not in _ALLOWED_VALUES:
                    problems.append(f"{rel}:{lineno}: {m.group(1)} has a literal value")
            for pattern in _KNOWN_SECRETS:
                if pattern.search(line):
                    problems.append(f"{rel}:{lineno}: looks like a credential")
    assert not problems, "\n".join(problems)


def test_credential_env_files_are_git_ignored_and_unused():
    patterns = _k8s_gitignore_patterns()
    for name in ("storage.env", "credentials.env"):
        assert any(fnmatch.fnmatch(name, p) for p in patterns["ignore"]), (
            f"k8s/.gitignore must ignore {name}"
        )
    assert any(fnmatch.fnmatch("storage.env.example", p) for p in patterns["keep"])
    example = K8S / "overlays" / "external-s3" / "storage.env.example"
    assert example.is_file()
    for line in example.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            assert value.strip() == "", f"storage.env.example must hold key names only: {key}"
    # A clean clone has no storage.env: no kustomization may need a git-ignored file.
    for kfile in K8S.rglob("kustomization.yaml"):
        k = yaml.safe_load(kfile.read_text()) or {}
        for gen in (k.get("secretGenerator") or []) + (k.get("configMapGenerator") or []):
            for ref in (gen.get("envs") or []) + (gen.get("files") or []) + [gen.get("env") or ""]:
                src = ref.split("=", 1)[-1]
                assert not src or not any(
                    fnmatch.fnmatch(Path(src).name, p) for p in patterns["ignore"]
                ), f"{kfile.relative_to(REPO)} reads git-ignored {src}"


# ---------------------------------------------------------------------------------------------
# wiring


def _role_rules(docs: list[dict]) -> list[dict]:
    return _one(docs, "Role", "dna-pipeline-runner")["rules"]


def _grants(rules: list[dict], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r.get("apiGroups", [])
        and resource in r.get("resources", [])
        and verb in r["verbs"]
        for r in rules
    )


# Everything the task pods' processes do with the Kubernetes API (dna's own code: nothing; it
# talks to Ray over the Jobs API). KFP's driver and launcher read their ConfigMap and the
# artifact store's Secret; Argo's executor writes WorkflowTaskResults.
NEEDED_RULES = {
    ("", "configmaps", "kfp-launcher"): {"get"},
    ("", "secrets", "mlpipeline-minio-artifact"): {"get"},
    ("argoproj.io", "workflowtaskresults", None): {"create", "patch"},
}


def _flat_rules(rules: list[dict]) -> dict[tuple, set[str]]:
    out: dict[tuple, set[str]] = {}
    for r in rules:
        for group in r.get("apiGroups", []):
            for resource in r.get("resources", []):
                for name in r.get("resourceNames") or [None]:
                    out.setdefault((group, resource, name), set()).update(r["verbs"])
    return out


@pytest.mark.parametrize("rel", ["base", *OVERLAYS])
def test_rbac_is_exactly_what_the_task_pods_use(rel):
    docs = _docs(rel)
    assert _flat_rules(_role_rules(docs)) == NEEDED_RULES
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    binding = _one(docs, "RoleBinding", "dna-pipeline-runner")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "dna-pipeline-runner",
    }
    # Only the project's own account: KFP's shared pipeline-runner gets nothing from dna.
    (subject,) = binding["subjects"]
    assert (subject["kind"], subject["name"]) == ("ServiceAccount", "dna-pipeline-runner")
    sa = _one(docs, "ServiceAccount", "dna-pipeline-runner")
    assert sa.get("automountServiceAccountToken") is True, "KFP's launcher calls the API"
    if rel in OVERLAYS:
        assert subject["namespace"] == binding["metadata"]["namespace"] == "kubeflow"


def test_rbac_check_catches_extra_rights():
    docs = _docs("base")
    rules = _role_rules(docs) + [
        {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create", "delete"]}
    ]
    assert _flat_rules(rules) != NEEDED_RULES


def test_runs_use_the_project_service_account():
    from components import settings
    from pipelines import submit

    docs = _docs("overlays/kfp-bundled-store")
    (subject,) = _one(docs, "RoleBinding", "dna-pipeline-runner")["subjects"]
    assert settings.SERVICE_ACCOUNT == subject["name"]

    class Client:
        def __init__(self):
            self.kw = {}

        def create_run_from_pipeline_func(self, func, **kw):
            self.kw = kw
            return type("Result", (), {"run_id": "r1"})()

    client = Client()
    submit.submit(client, object(), {}, "http://kfp", "exp", run_name="r")
    assert client.kw["service_account"] == subject["name"]


def _storage_refs(docs: list[dict]) -> dict[str, tuple[str, str]]:
    """env name -> (secret name, key), checked to be the same in every Ray container."""
    refs: dict[str, tuple[str, str]] = {}
    cluster = _one(docs, "RayCluster", "dna-ray")
    for _, spec in _pod_specs(cluster):
        for c in spec["containers"]:
            got = {
                e["name"]: (
                    e["valueFrom"]["secretKeyRef"]["name"],
                    e["valueFrom"]["secretKeyRef"]["key"],
                )
                for e in c.get("env") or []
                if "secretKeyRef" in (e.get("valueFrom") or {}) and e["name"] != "RAY_AUTH_TOKEN"
            }
            assert set(got) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, c["name"]
            for k, v in got.items():
                assert refs.setdefault(k, v) == v, f"{c['name']}: {k} differs between containers"
    return refs


@pytest.mark.parametrize(
    "rel, secret, access_key, secret_key, endpoint",
    [
        ("base", "dna-storage", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", None),
        (
            "overlays/kfp-bundled-store",
            "mlpipeline-minio-artifact",
            "accesskey",
            "secretkey",
            "http://seaweedfs.kubeflow:9000",
        ),
        ("overlays/external-s3", "dna-storage", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", None),
    ],
)
def test_storage_settings_are_consistent(rel, secret, access_key, secret_key, endpoint):
    docs = _docs(rel)
    refs = _storage_refs(docs)
    assert refs == {
        "AWS_ACCESS_KEY_ID": (secret, access_key),
        "AWS_SECRET_ACCESS_KEY": (secret, secret_key),
    }
    settings = _one(docs, "ConfigMap", "dna-settings")["data"]
    assert SETTINGS_KEYS <= set(settings), f"dna-settings lacks {SETTINGS_KEYS - set(settings)}"
    assert settings["DNA_STORAGE_SECRET"] == secret
    assert settings["DNA_STORAGE_ACCESS_KEY_FIELD"] == access_key
    assert settings["DNA_STORAGE_SECRET_KEY_FIELD"] == secret_key
    assert settings["DNA_RUN_ROOT"].startswith("s3://")
    assert settings["RAY_ADDRESS"] == "http://dna-ray-head-svc:8265"
    if endpoint is not None:
        assert settings["DNA_S3_ENDPOINT"] == endpoint
    # The pods get the store Secret from the kubelet: the runner's account may not read it.
    if secret != "mlpipeline-minio-artifact":
        assert ("", "secrets", secret) not in _flat_rules(_role_rules(docs))
    # Ray pods read the store settings from dna-settings, and no RAY_ADDRESS (KubeRay's own).
    cluster = _one(docs, "RayCluster", "dna-ray")
    for _, spec in _pod_specs(cluster):
        for c in spec["containers"]:
            names = {e["name"]: e for e in c.get("env") or []}
            for key in ("DNA_RUN_ROOT", "DNA_S3_ENDPOINT", "AWS_REGION"):
                assert names[key]["valueFrom"]["configMapKeyRef"]["name"] == "dna-settings"
            assert "RAY_ADDRESS" not in names
            assert not c.get("envFrom"), "pick settings by key; envFrom would set RAY_ADDRESS"


@pytest.mark.parametrize("rel", OVERLAYS + ["examples/recurring-run"])
def test_overlay_namespace_is_kubeflow(rel):
    for doc in _docs(rel):
        assert doc["metadata"].get("namespace") == "kubeflow", (
            f"{doc['kind']}/{doc['metadata']['name']}"
        )


def test_base_is_namespace_agnostic():
    for doc in _docs("base"):
        assert "namespace" not in doc["metadata"], f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_one_image_set_by_kustomize(rel):
    docs = _docs(rel)
    images = {c["image"] for d in docs for _, spec in _pod_specs(d) for c in _containers(spec)}
    if not images:
        pytest.skip(f"k8s/{rel} has no containers")
    assert images == {f"dna-nas:{_version()}"}, f"k8s/{rel}: images {images}"
    kfile = yaml.safe_load((K8S / rel / "kustomization.yaml").read_text())
    assert any(i["name"] == "dna-nas" for i in kfile.get("images", [])), (
        f"k8s/{rel}: set the image with kustomize `images:` so users can override it"
    )
    settings = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "dna-settings"
    ]
    for cm in settings:
        assert cm["data"]["DNA_IMAGE"] in images


@pytest.mark.parametrize("rel", OVERLAYS)
def test_image_override_reaches_pods_and_settings(rel, tmp_path):
    """`kustomize edit set image` in a user overlay on top of ours changes pods and DNA_IMAGE."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found: install kubectl (it bundles kustomize) to render k8s/")
    src = K8S / rel
    # Copy the overlay beside the real base so relative paths keep working.
    k8s_copy = tmp_path / "k8s"
    shutil.copytree(K8S, k8s_copy, ignore=shutil.ignore_patterns("*.env"))
    kfile = k8s_copy / rel / "kustomization.yaml"
    k = yaml.safe_load(kfile.read_text())
    k["images"] = [{"name": "dna-nas", "newName": "registry.example/dna-nas", "newTag": "v1"}]
    kfile.write_text(yaml.safe_dump(k))
    proc = subprocess.run(
        [kubectl, "kustomize", str(kfile.parent)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    images = {c["image"] for d in docs for _, spec in _pod_specs(d) for c in _containers(spec)}
    assert images == {"registry.example/dna-nas:v1"}, src
    assert (
        _one(docs, "ConfigMap", "dna-settings")["data"]["DNA_IMAGE"]
        == "registry.example/dna-nas:v1"
    )


def _version() -> str:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def _pinned(image: str) -> bool:
    """A version tag (not `latest`) or a digest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_images_by_version_never_latest(rel):
    docs = _docs(rel)
    kfile = yaml.safe_load((K8S / rel / "kustomization.yaml").read_text())
    for entry in kfile.get("images", []):
        assert entry.get("digest") or str(entry.get("newTag")) == _version(), entry
    images = [c["image"] for d in docs for _, spec in _pod_specs(d) for c in _containers(spec)]
    images += [
        d["data"]["DNA_IMAGE"] for d in docs if d["kind"] == "ConfigMap" and "DNA_IMAGE" in d["data"]
    ]
    for doc in docs:
        if doc["kind"] == "RayCluster":
            images += [i for i in [(doc["spec"].get("autoscalerOptions") or {}).get("image")] if i]
    assert images and all(_pinned(i) for i in images), f"k8s/{rel}: {images}"
    assert _pinned("reg/dna-nas@sha256:" + "0" * 64) and not _pinned("reg:5000/dna-nas")
    assert not _pinned("dna-nas:latest") and not _pinned("dna-nas")


def test_component_image_defaults_to_the_package_version():
    import dna
    from components import settings

    assert dna.__version__ == _version()
    assert settings.DEFAULT_IMAGE == f"dna-nas:{_version()}"
    env = {k: v for k, v in os.environ.items() if k != "DNA_IMAGE"}
    code = "from components import settings; print(settings.IMAGE)"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True).stdout.strip()
    assert out == f"dna-nas:{_version()}"


# ---------------------------------------------------------------------------------------------
# Ray token authentication


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env") or []}


def _assert_ray_token_env(env: dict[str, dict], where: str) -> None:
    assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", f"{where}: RAY_AUTH_MODE=token"
    ref = ((env.get("RAY_AUTH_TOKEN") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
    assert (ref.get("name"), ref.get("key")) == RAY_AUTH, f"{where}: RAY_AUTH_TOKEN from {RAY_AUTH}"
    assert "value" not in env["RAY_AUTH_TOKEN"], f"{where}: a literal token"


@pytest.mark.parametrize("rel", ["base", *OVERLAYS])
def test_ray_cluster_requires_the_token(rel):
    docs = _docs(rel)
    rc = _one(docs, "RayCluster", "dna-ray")
    assert rc["spec"]["authOptions"] == {"mode": "token", "secretName": RAY_AUTH[0]}
    containers = [c for _, spec in _pod_specs(rc) for c in spec["containers"]]
    assert {c["name"] for c in containers} == {"ray-head", "ray-worker"}
    for c in containers:
        _assert_ray_token_env(_env(c), c["name"])
    _assert_ray_token_env(_env(rc["spec"]["autoscalerOptions"]), "autoscaler")
    # The pipeline's tasks: the mode from dna-settings, the token from the same Secret.
    from components import settings

    assert _one(docs, "ConfigMap", "dna-settings")["data"]["RAY_AUTH_MODE"] == "token"
    assert settings.SETTINGS_ENV["RAY_AUTH_MODE"] == "RAY_AUTH_MODE"
    assert (settings.RAY_AUTH_SECRET, settings.RAY_AUTH_SECRET_KEY) == RAY_AUTH


def test_recurring_run_submitter_sends_the_token():
    cron = _one(_docs("examples/recurring-run"), "RayCronJob")
    (c,) = cron["spec"]["jobTemplate"]["submitterPodTemplate"]["spec"]["containers"]
    _assert_ray_token_env(_env(c), "ray-job-submitter")


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).seen.append(self.headers.get("Authorization") or "")
        self.send_response(401)
        self.end_headers()
        self.wfile.write(b"Unauthorized")

    def log_message(self, *args):
        pass


def test_jobs_api_client_sends_the_token_from_the_environment():
    """What a task pod has (RAY_AUTH_MODE from dna-settings, RAY_AUTH_TOKEN from the Secret)
    makes Ray's own JobSubmissionClient send the bearer token: no code of ours carries it."""
    pytest.importorskip("ray")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _RecordingHandler.seen = []
    try:
        code = (
            "import sys\n"
            "from ray.job_submission import JobSubmissionClient\n"
            "try:\n"
            f"    JobSubmissionClient('http://127.0.0.1:{server.server_port}')\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__)\n"
        )
        env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="tok-123")
        env.pop("RAY_ADDRESS", None)
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120, check=True)
    finally:
        server.shutdown()
        server.server_close()
    assert _RecordingHandler.seen, "the client sent no request"
    assert set(_RecordingHandler.seen) == {"Bearer tok-123"}


# ---------------------------------------------------------------------------------------------
# NetworkPolicy


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels AND matchExpressions; {} selects all)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def _admits(policies, namespace, target, source, source_ns, port) -> bool:
    """Whether ingress from `source` (labels, namespace labels) to `target` on TCP `port` is
    allowed: pods no policy selects are open; selected pods take the union of their rules."""
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace", namespace) == namespace
        and _selects(p["spec"]["podSelector"], target)
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not selecting:
        return True
    for p in selecting:
        for rule in p["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(
                q.get("protocol", "TCP") == "TCP" and q.get("port") == port for q in ports
            ):
                continue
            peers = rule.get("from")
            if peers is None:
                return True
            for peer in peers:
                assert "ipBlock" not in peer, "no ipBlock peers"
                if "namespaceSelector" in peer:
                    ns_ok = _selects(peer["namespaceSelector"], source_ns)
                else:
                    ns_ok = source_ns.get("kubernetes.io/metadata.name") == namespace
                if ns_ok and _selects(peer.get("podSelector") or {}, source):
                    return True
    return False


def _template_labels(rc: dict, component: str) -> dict[str, str]:
    if component == "ray-head":
        return rc["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]
    return rc["spec"]["workerGroupSpecs"][0]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("rel", OVERLAYS)
def test_network_policy_admits_only_the_pipeline_to_the_head(rel):
    from components import settings

    docs = _docs(rel)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert policies, f"k8s/{rel}: no NetworkPolicy"
    rc = _one(docs, "RayCluster", "dna-ray")
    ns = rc["metadata"]["namespace"]
    here = {"kubernetes.io/metadata.name": ns}
    head, worker = _template_labels(rc, "ray-head"), _template_labels(rc, "ray-worker")
    submitter = _one(_docs("examples/recurring-run"), "RayCronJob")["spec"]["jobTemplate"][
        "submitterPodTemplate"]["metadata"]["labels"]
    task = dict(settings.TASK_POD_LABELS)
    operator = ({"app.kubernetes.io/name": "kuberay-operator"},
                {"kubernetes.io/metadata.name": "kuberay-system"})

    def admits(target, source, source_ns, port):
        return _admits(policies, ns, target, source, source_ns, port)

    gcs, dash, client = HEAD_PORTS["gcs"], HEAD_PORTS["dashboard"], HEAD_PORTS["client"]
    # The pipeline's task pods and the RayCronJob submitter: the Jobs API and Ray client only.
    for source in (task, submitter):
        assert admits(head, source, here, dash) and admits(head, source, here, client)
        assert not admits(head, source, here, gcs)
        assert not admits(worker, source, here, 8080)
    # The KubeRay operator (job status) on the dashboard port only.
    assert admits(head, *operator, dash) and not admits(head, *operator, gcs)
    # Ray's own pods: every port, both ways.
    for a, b in ((worker, head), (head, worker), (worker, worker)):
        for port in (gcs, dash, client, 8076, 12345):
            assert admits(a, b, here, port)
    # Anyone else: nothing, here or from another namespace with the right labels.
    elsewhere = {"kubernetes.io/metadata.name": "team-b"}
    for stranger, stranger_ns in (({"app": "notebook"}, here), ({}, here), (task, elsewhere),
                                  ({**task, "app.kubernetes.io/component": "other"}, here)):
        for port in (gcs, dash, client):
            assert not admits(head, stranger, stranger_ns, port), (stranger, stranger_ns, port)
            assert not admits(worker, stranger, stranger_ns, port)


def test_network_policy_check_catches_an_open_rule():
    docs = _docs("base")
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    rc = _one(docs, "RayCluster", "dna-ray")
    head = _template_labels(rc, "ray-head")
    here = {"kubernetes.io/metadata.name": "default"}
    assert not _admits(policies, "default", head, {"app": "x"}, here, 8265)
    opened = copy.deepcopy(policies) + [
        {"metadata": {"name": "open"},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}}
    ]
    assert _admits(opened, "default", head, {"app": "x"}, here, 8265)


# ---------------------------------------------------------------------------------------------
# the compiled KFP pipeline


@functools.cache
def _compiled_executors(tmp: str) -> tuple[dict, dict]:
    from pipelines import dna as dna_pipeline
    from pipelines.graph import BuildOptions
    from pipelines.submit import compile_pipeline

    path = os.path.join(tmp, "dna.yaml")
    compile_pipeline(dna_pipeline.build(1, BuildOptions()), path, {})
    spec, platform = list(yaml.safe_load_all(Path(path).read_text()))
    return (spec["deploymentSpec"]["executors"],
            platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"])


def test_compiled_pipeline_pods_are_hardened(tmp_path_factory):
    from components import settings

    executors, k8s = _compiled_executors(str(tmp_path_factory.mktemp("kfp")))
    assert set(executors) == set(k8s) and len(executors) >= 6
    for name, ex in executors.items():
        assert ex["container"]["image"] == settings.IMAGE and _pinned(settings.IMAGE), name
        cfg = k8s[name]
        sc = cfg["securityContext"]
        assert int(sc["runAsUser"]) == int(sc["runAsGroup"]) == settings.TASK_UID != 0, name
        assert sc["runAsNonRoot"] is True, name
        assert cfg["podMetadata"]["labels"] == settings.TASK_POD_LABELS, name
        tokens = [
            (s.get("secretName"), m["secretKey"])
            for s in cfg["secretAsEnv"]
            for m in s["keyToEnv"]
            if m["envVar"] == "RAY_AUTH_TOKEN"
        ]
        assert tokens == [RAY_AUTH], name
        modes = [m for c in cfg["configMapAsEnv"] for m in c["keyToEnv"]
                 if m["envVar"] == "RAY_AUTH_MODE"]
        assert modes and all(c["configMapName"] == "dna-settings" for c in cfg["configMapAsEnv"])
    # The labels the tasks carry are the ones the head's NetworkPolicy admits.
    docs = _docs("overlays/kfp-bundled-store")
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    rc = _one(docs, "RayCluster", "dna-ray")
    labels = next(iter(k8s.values()))["podMetadata"]["labels"]
    here = {"kubernetes.io/metadata.name": "kubeflow"}
    assert _admits(policies, "kubeflow", _template_labels(rc, "ray-head"), labels, here, 8265)
    # The task user is the image's user.
    users = [a for i, a in _dockerfile_instructions((DOCKER / "Dockerfile").read_text())
             if i == "USER"]
    assert users[-1] == f"{settings.TASK_UID}:{settings.TASK_UID}"


@pytest.mark.parametrize("rel", ["base", *OVERLAYS])
def test_ray_cluster_has_autoscaled_gpu_workers(rel):
    rc = _one(_docs(rel), "RayCluster", "dna-ray")
    spec = rc["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["template"]["spec"]["containers"]
    gpu_groups = [
        g
        for g in spec["workerGroupSpecs"]
        if any(
            str((c.get("resources") or {}).get("limits", {}).get("nvidia.com/gpu")) == "1"
            for c in g["template"]["spec"]["containers"]
        )
    ]
    assert gpu_groups, "a worker group with one nvidia.com/gpu per worker"
    for g in gpu_groups:
        assert g["minReplicas"] == 0 and g["maxReplicas"] >= 1
        assert g["maxReplicas"] >= g.get("replicas", 0) >= g["minReplicas"]
        assert g["rayStartParams"].get("num-gpus") == "1"


def test_recurring_run_example():
    cron = _one(_docs("examples/recurring-run"), "RayCronJob")
    assert len(cron["spec"]["schedule"].split()) == 5, "RayCronJob takes a 5-field cron"
    job = cron["spec"]["jobTemplate"]
    assert job["clusterSelector"] == {"ray.io/cluster": "dna-ray"}
    assert "pip install" not in job["entrypoint"]
    # The driver runs on the head, in its working directory: writable despite the read-only root.
    head = _one(_docs("base"), "RayCluster", "dna-ray")["spec"]["headGroupSpec"]["template"]["spec"]
    (c,) = head["containers"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in head["volumes"]}
    assert "emptyDir" in volumes[mounts[c["workingDir"]]]
    readme = (K8S / "README.md").read_text()
    assert "--schedule '0 0 3 * * *'" in readme, "document KFP's 6-field (seconds-first) cron"


def _expand_entrypoint(entrypoint: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The entrypoint's words as the submitter's bash makes them (KubeRay puts it in a bash
    command: ``ray job submit ... -- ENTRYPOINT``), NUL-separated."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not found")
    return subprocess.run([bash, "-c", f'printf "%s\\0" {entrypoint}'], capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", ""), **env}, timeout=30, check=False)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_recurring_run_runs_a_real_search_under_the_store(overlay):
    """The nightly run's config as its driver would build it: a real preset and data set, a root
    of its own under the overlay's DNA_RUN_ROOT (not the smoke demo into a local folder)."""
    from pipelines.flags import make_parser
    from pipelines.presets import PRESETS
    from pipelines.run_config import build_run_config, validate_run_config

    job = _one(_docs("examples/recurring-run"), "RayCronJob")["spec"]["jobTemplate"]
    (submitter,) = job["submitterPodTemplate"]["spec"]["containers"]
    env = {e["name"]: e for e in submitter["env"]}
    assert env["DNA_RUN_ROOT"]["valueFrom"]["configMapKeyRef"] == {"name": "dna-settings", "key": "DNA_RUN_ROOT"}
    settings = _one(_docs(overlay), "ConfigMap", "dna-settings")["data"]
    base = settings["DNA_RUN_ROOT"]
    proc = _expand_entrypoint(job["entrypoint"], {"DNA_RUN_ROOT": base})
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split("\0")[:-1]
    assert words[:2] == ["python", "/opt/dna/pipelines/dna_plus.py"]
    args = make_parser("dna_plus.py", "", generations_flag=True).parse_args(words[2:])
    assert args.preset != "smoke" and args.data and args.root
    cfg = build_run_config(args, args.root, args.generations or PRESETS[args.preset]["generations"])
    validate_run_config(cfg, remote=True)
    assert cfg["root"].startswith(base.rstrip("/") + "/nightly-") and cfg["root"].startswith("s3://")
    assert re.fullmatch(r".*/nightly-\d{8}", cfg["root"]), "one root per night"
    assert cfg["data"]["uri"].startswith("s3://") and cfg["data"]["uri"] != "builtin:shapes"
    assert cfg["space"] == PRESETS[args.preset]["run"]["space"] != PRESETS["smoke"]["run"]["space"]
    assert cfg["teacher"]["model"] == PRESETS[args.preset]["run"]["teacher"]["model"] != "tiny"
    # the driver runs the training tasks: Ray starts it where a GPU is
    if PRESETS[args.preset]["params"]["gpus"]:
        assert job["entrypointNumGpus"] >= 1
    # no DNA_RUN_ROOT: the submitter stops, naming it, instead of writing to a local folder
    empty = _expand_entrypoint(job["entrypoint"], {"DNA_RUN_ROOT": ""})
    assert empty.returncode != 0 and "DNA_RUN_ROOT" in empty.stderr


# ---------------------------------------------------------------------------------------------
# docker/


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            instr, _, args = buf.strip().partition(" ")
            out.append((instr.upper(), args.strip()))
        buf = ""
    return out


def test_dockerfile_sanity():
    dockerfile = DOCKER / "Dockerfile"
    assert dockerfile.is_file()
    instrs = _dockerfile_instructions(dockerfile.read_text())
    kinds = [i for i, _ in instrs]
    assert kinds and set(kinds[: kinds.index("FROM")]) <= {"ARG"}, "FROM first (after ARGs)"
    assert kinds.count("FROM") >= 1
    runs = " ".join(a for i, a in instrs if i == "RUN")
    assert re.search(r"pip install[^;&|]*(/opt/dna|/src|\s\.)", runs), "installs the project"
    assert "torch" in runs or "torch.txt" in runs
    users = [a for i, a in instrs if i == "USER"]
    assert users, "USER missing"
    final_user = users[-1].split(":")[0]
    assert final_user not in ("0", "root"), f"final USER must be non-root, is {users[-1]}"
    # Numeric, so that the kubelet can check runAsNonRoot without reading /etc/passwd.
    assert re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1]), f"USER must be numeric: {users[-1]}"
    for instr, args in instrs:
        if instr == "FROM" or (instr == "ARG" and args.startswith("BASE_IMAGE=")):
            assert ":latest" not in args, f"{instr} {args}: pin the base image"
    entry = [a for i, a in instrs if i in ("ENTRYPOINT", "CMD")]
    assert ("ENTRYPOINT", "[]") in instrs, "ENTRYPOINT [] (KFP / KubeRay give the command)"
    for args in entry:
        assert "pip" not in args, f"no pip at start-up: {args}"
    envs = " ".join(a for i, a in instrs if i == "ENV")
    assert "HF_HUB_OFFLINE" not in envs, "HF_HUB_OFFLINE must not be forced in the image"
    assert any(i == "WORKDIR" for i, _ in instrs)


def test_dockerignore_keeps_needed_files_and_drops_secrets():
    ignore = DOCKER / "Dockerfile.dockerignore"
    assert ignore.is_file()
    lines = [ln.strip() for ln in ignore.read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    assert lines[0] == "*", "an allowlist: exclude everything, then re-include"
    keep = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert {"pyproject.toml", "dna", "docker/requirements_from_pyproject.py"} <= keep
    assert not {".git", ".venv", "k8s", "runs"} & keep
    assert "**/*.env" in lines
    # COPY sources in the Dockerfile are all in the allowlist (or the whole context).
    for instr, args in _dockerfile_instructions((DOCKER / "Dockerfile").read_text()):
        if instr == "COPY" and "--from" not in args:
            for src in [a for a in args.split() if not a.startswith("--")][:-1]:
                assert src == "." or src in keep, f"COPY {src} is excluded from the context"


def test_requirements_helper_matches_pyproject():
    helper = DOCKER / "requirements_from_pyproject.py"
    proc = subprocess.run(
        [sys.executable, str(helper), str(REPO / "pyproject.toml"), "--only", "torch,torchvision"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pins = proc.stdout.split()
    assert len(pins) == 2 and all("==" in p for p in pins), pins
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert set(pins) <= set(deps)
    full = subprocess.run(
        [sys.executable, str(helper), str(REPO / "pyproject.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert full == deps
