"""One request's pipeline: auth, body, routing, quota, attempts with breakers, the answer."""
