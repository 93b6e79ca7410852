"""The REST answers, one pydantic model per shape (requests live beside their routes).

Endpoints answer through ``zzd.http.contract.reply(Model, data)``, so these
models both shape what leaves and write the OpenAPI document.
"""
