"""Inbound webhooks: what GitHub and Vercel push to ``/webhooks/<endpoint_token>/``.

``signatures`` checks who sent a request, ``providers`` knows each
provider's headers and events, ``github`` and ``vercel`` map its payloads
onto field values for the ``development`` services. The view (``integrations.views``) and the
delivery log services (``integrations.services``) are provider-neutral.
"""
