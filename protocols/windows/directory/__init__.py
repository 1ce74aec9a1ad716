"""Active Directory for the Windows protocol: the LDAP client (:mod:`.ldap`), security
descriptors and the Enroll/AutoEnroll check (:mod:`.sd`), the ``directory`` settings
(:mod:`.settings`), templates, rights and callers from the directory (:mod:`.policy`),
certificate names from an account (:mod:`.names`) and ``gateway windows ad check``
(:mod:`.check`)."""
