"""ordersync: keeps WiredPlus orders and order events in step with a shop."""

__version__ = "0.1.0"
