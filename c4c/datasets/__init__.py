"""Annotation readers: one per dataset format, all producing :class:`VideoRecord`."""
