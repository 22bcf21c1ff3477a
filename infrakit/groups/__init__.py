"""InfraKit's Group SPI, the one interface of every mode's groups (:mod:`infrakit.groups.spi`).

``spi`` is the interface and its answers; ``client`` the SPI through a group daemon
(``Group/0.1.0``); ``serving`` any SPI on the wire (what the group daemon serves);
``metadata`` the group plugin's metadata tree from any SPI.  The local store's SPI is
``infrakit.local.groups``, a cluster's ``infrakit.cluster.remote``: each mode implements
the interface defined here, below it.
"""
