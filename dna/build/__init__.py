"""Architecture format (timm arch_def), model build, export."""
