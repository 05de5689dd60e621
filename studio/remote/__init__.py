"""The studio's queue on a Ray cluster: engine actors (`actor.py`, one per GPU, or one per
few CPUs), and the pool that connects, places jobs on them and brings back each step and
result (`pool.py`). Free of Qt: the window's Ray backend and the command line both use it.

Ray is imported only inside functions, when the user asks for a cluster: the local studio
never imports it, starts a cluster or opens a port.
"""
