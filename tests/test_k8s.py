"""The Kubernetes manifests (k8s/) and the image recipe (docker/), checked offline in seconds.

Every kustomization under k8s/ is rendered with `kubectl kustomize`; core kinds are validated
with kubernetes-validate, Ray kinds against the openAPIV3Schema of KubeRay's CRDs in
../shared/schemas/kuberay/ (beside the repository). Then the security and wiring rules the
project relies on: non-root pods, no credentials in files, RBAC for RayJobs, one image.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
DOCKER = REPO / "docker"
KUBERAY_SCHEMAS = Path(__file__).resolve().parents[1].parent / "shared" / "schemas" / "kuberay"

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
CREDENTIAL_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


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
            f"KubeRay CRD schemas not found at {KUBERAY_SCHEMAS} "
            "(expected ../shared/schemas/kuberay beside the repository)"
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
            res = c.get("resources") or {}
            assert res.get("requests") and res.get("limits"), f"{cwhere}: requests and limits"
            assert "memory" in res["limits"], f"{cwhere}: memory limit"


@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_ray_autoscaler_sidecar_is_restricted(rel):
    clusters = [d for d in _docs(rel) if d["kind"] == "RayCluster"]
    if not clusters:
        pytest.skip(f"k8s/{rel} has no RayCluster")
    for rc in clusters:
        if not rc["spec"].get("enableInTreeAutoscaling"):
            continue
        sc = (rc["spec"].get("autoscalerOptions") or {}).get("securityContext") or {}
        assert sc.get("runAsNonRoot") is True and sc.get("allowPrivilegeEscalation") is False
        assert "ALL" in (sc.get("capabilities") or {}).get("drop", [])


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


@pytest.mark.parametrize("rel", ["base", *OVERLAYS])
def test_rbac_lets_pipelines_run_ray_jobs(rel):
    docs = _docs(rel)
    rules = _role_rules(docs)
    for resource in ("rayjobs", "rayclusters"):
        for verb in ("create", "get", "list", "watch", "delete"):
            assert _grants(rules, "ray.io", resource, verb), f"{rel}: {verb} {resource}"
    assert _grants(rules, "", "pods/log", "get")
    secret_rules = [r for r in rules if "secrets" in r.get("resources", [])]
    assert secret_rules, "the runner must be able to read the storage secret"
    for r in secret_rules:
        assert r.get("resourceNames"), "secret access must be restricted by resourceNames"
        assert set(r["verbs"]) <= {"get"}, "secrets: get only"
    for r in rules:
        assert "*" not in r["verbs"] and "*" not in r.get("resources", []), "no wildcards"

    binding = _one(docs, "RoleBinding", "dna-pipeline-runner")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "dna-pipeline-runner",
    }
    subjects = {(s["kind"], s["name"]): s.get("namespace") for s in binding["subjects"]}
    assert subjects.get(("ServiceAccount", "pipeline-runner")) == "kubeflow"
    assert ("ServiceAccount", "dna-pipeline-runner") in subjects
    _one(docs, "ServiceAccount", "dna-pipeline-runner")
    if rel in OVERLAYS:
        ns = binding["metadata"]["namespace"]
        assert subjects[("ServiceAccount", "dna-pipeline-runner")] == ns


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
                if "secretKeyRef" in (e.get("valueFrom") or {})
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
    # The runner may read exactly the secret the pods use.
    secret_rules = [r for r in _role_rules(docs) if "secrets" in r.get("resources", [])]
    assert [n for r in secret_rules for n in r["resourceNames"]] == [secret]
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
    assert images == {"dna-nas:latest"}, f"k8s/{rel}: images {images}"
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
    readme = (K8S / "README.md").read_text()
    assert "--schedule '0 0 3 * * *'" in readme, "document KFP's 6-field (seconds-first) cron"


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
