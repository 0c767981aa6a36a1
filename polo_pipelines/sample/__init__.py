"""The sample world and its renderers into each platform's own payload shapes."""
