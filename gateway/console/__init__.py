"""The admin web console at ``/console``: server-rendered pages over the admin API.

Every page reads and every form acts through the admin API itself (on a private
socket, :mod:`.internal`), authenticated as the console user, so validation,
authorization (gateway.admin.roles) and audit are the API's, in one place.
"""
