"""Integrations with the tools around the platform: the Backstage catalog export and the chat
endpoint. Each one translates the service layer's views into another tool's format; RBAC and
audit stay in the service layer."""
