"""One router per resource of the REST API; :mod:`service.app` mounts them."""
