"""The HTTP edge inside the layer: callers from JWT claims, routers, and the one error mapping."""
