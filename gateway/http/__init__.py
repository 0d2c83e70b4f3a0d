"""The HTTP/JSON door of the gateway: REST routes from the protos' `google.api.http` rules.

Browsers, mobile apps and web vendors speak JSON over HTTPS; the door turns each
request into the method's proto request, then takes the same path as a gRPC call
(`gateway.proxy.Forwarder`: authentication, rate limits, the consent decision,
forwarding): one policy enforcement point. Browser sessions live in HttpOnly
cookies with a CSRF token (`gateway.http.session`).
"""
