"""Settings of the KFP components, read when the components are defined (compile time).

- ``DNA_IMAGE``: the image every component runs in (``docker/README.md``); default
  ``dna-nas:latest``. The pipelines' ``--image`` flag overrides it per task.
- The names below match the Kubernetes manifests in ``k8s/`` (ConfigMap ``dna-settings``,
  storage Secret ``mlpipeline-minio-artifact`` of KFP's bundled store or ``dna-storage``).
"""

import os

DEFAULT_IMAGE = "dna-nas:latest"
IMAGE = os.environ.get("DNA_IMAGE") or DEFAULT_IMAGE

SETTINGS_CONFIG_MAP = "dna-settings"
# ConfigMap key -> environment variable of the component (all optional in the pod).
SETTINGS_ENV = {
    "DNA_RUN_ROOT": "DNA_RUN_ROOT",
    "DNA_S3_ENDPOINT": "DNA_S3_ENDPOINT",
    "AWS_REGION": "AWS_REGION",
    "RAY_ADDRESS": "RAY_ADDRESS",
}

BUNDLED_STORE_SECRET = "mlpipeline-minio-artifact"
EXTERNAL_STORE_SECRET = "dna-storage"
STORAGE_SECRET = os.environ.get("DNA_STORAGE_SECRET") or BUNDLED_STORE_SECRET


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
