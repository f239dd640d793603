from django.apps import AppConfig


class ServersConfig(AppConfig):
    """Inventory: customers (tenants), memberships, credentials, servers, audit trail."""

    name = "servers"
    verbose_name = "Inventory"

    def ready(self) -> None:
        from servers import checks  # noqa: F401  (registers the deploy checks)
