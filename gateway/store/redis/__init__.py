"""The Redis backend of the store: standalone, Cluster and Sentinel, pipelined connections, Lua."""
