"""Settings of the KFP components, read when the components are defined (compile time).

- ``DNA_IMAGE``: the image every component runs in (``docker/README.md``); default
  ``dna-nas:<package version>`` (never ``latest``: a run must name the code it ran). The
  pipelines' ``--image`` flag overrides it per task.
- The names below match the Kubernetes manifests in ``k8s/`` (ConfigMap ``dna-settings``,
  storage Secret ``mlpipeline-minio-artifact`` of KFP's bundled store or ``dna-storage``,
  Ray token Secret ``dna-ray-auth``, ServiceAccount ``dna-pipeline-runner``).
"""

import os

from dna import __version__

IMAGE_NAME = "dna-nas"
DEFAULT_IMAGE = f"{IMAGE_NAME}:{__version__}"
IMAGE = os.environ.get("DNA_IMAGE") or DEFAULT_IMAGE

SETTINGS_CONFIG_MAP = "dna-settings"
# ConfigMap key -> environment variable of the component (all optional in the pod).
SETTINGS_ENV = {
    "DNA_RUN_ROOT": "DNA_RUN_ROOT",
    "DNA_S3_ENDPOINT": "DNA_S3_ENDPOINT",
    "AWS_REGION": "AWS_REGION",
    "RAY_ADDRESS": "RAY_ADDRESS",
    "RAY_AUTH_MODE": "RAY_AUTH_MODE",
}

BUNDLED_STORE_SECRET = "mlpipeline-minio-artifact"
EXTERNAL_STORE_SECRET = "dna-storage"
STORAGE_SECRET = os.environ.get("DNA_STORAGE_SECRET") or BUNDLED_STORE_SECRET

# Ray's token authentication (RAY_AUTH_MODE=token): the token lives in this Secret under KubeRay's
# key `auth_token`; Ray pods and pipeline tasks read it as RAY_AUTH_TOKEN. Ray's JobSubmissionClient
# sends it (Authorization: Bearer) by itself when RAY_AUTH_MODE=token (from dna-settings) is set.
RAY_AUTH_SECRET = os.environ.get("DNA_RAY_AUTH_SECRET") or "dna-ray-auth"
RAY_AUTH_SECRET_KEY = "auth_token"
RAY_AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"

# The run's Kubernetes identity (k8s/base/rbac.yaml); empty: KFP's default account.
SERVICE_ACCOUNT = os.environ.get("DNA_SERVICE_ACCOUNT", "dna-pipeline-runner") or None

# Task pods: the labels the head's NetworkPolicy admits (k8s/base/networkpolicy.yaml) and the
# image's non-root user (docker/Dockerfile).
TASK_POD_LABELS = {"app.kubernetes.io/part-of": "dna", "app.kubernetes.io/component": "pipeline-task"}
TASK_UID = 1000


def storage_secret_keys(secret_name: str) -> dict[str, str]:
    """Secret data key -> env var: KFP's bundled store secret uses ``accesskey``/``secretkey``,
    ``dna-storage`` (and any other) the AWS names; ``DNA_STORAGE_ACCESS_KEY_FIELD`` /
    ``DNA_STORAGE_SECRET_KEY_FIELD`` override the keys."""
    if secret_name == BUNDLED_STORE_SECRET:
        access, secret = "accesskey", "secretkey"
    else:
        access, secret = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
    access = os.environ.get("DNA_STORAGE_ACCESS_KEY_FIELD") or access
    secret = os.environ.get("DNA_STORAGE_SECRET_KEY_FIELD") or secret
    return {access: "AWS_ACCESS_KEY_ID", secret: "AWS_SECRET_ACCESS_KEY"}

