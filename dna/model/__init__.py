"""The stand-alone model of an architecture: the architecture JSON (timm arch_def), the timm layer
factory shared with the supernets and the cost counter, the model builders, summary and export."""
