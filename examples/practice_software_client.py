"""A practice-software client: connect with a professional card, upload then read a document.

    python examples/practice_software_client.py --dossier dossiers/<id> \
        --cert var/pki/cards/doctor.crt --key var/pki/cards/doctor.key

Needs a running platform (`make run`) whose gateway listens on localhost:8443,
and a card registered in the directory. Only the generated stubs of
`protos/` and grpcio are used: a vendor does the same in any language.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc

from dmp.records.v1 import records_pb2, records_pb2_grpc


def card_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=Path(args.ca).read_bytes(),
        private_key=Path(args.key).read_bytes(),
        certificate_chain=Path(args.cert).read_bytes(),
    )


async def main(args: argparse.Namespace) -> None:
    credentials = card_credentials(args)
    async with grpc.aio.secure_channel(args.gateway, credentials) as channel:
        records = records_pb2_grpc.RecordsServiceStub(channel)
        document = records_pb2.Document(
            title="Compte rendu de consultation",
            type_code="11488-4",
            format=records_pb2.DOCUMENT_FORMAT_TEXT_PLAIN,
            content=b"Consultation du jour: examen clinique normal.",
        )
        document.service_start_time.FromDatetime(datetime.now(UTC))
        created = await records.CreateDocument(
            records_pb2.CreateDocumentRequest(
                parent=args.dossier, document=document, request_id=str(uuid.uuid4())
            ),
            timeout=10,
        )
        print("uploaded", created.name)
        request = records_pb2.GetDocumentRequest(name=created.name)
        read = await records.GetDocument(request, timeout=10)
        print("read back", read.title, len(read.content), "bytes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gateway", default="localhost:8443")
    parser.add_argument("--ca", default="var/pki/ca.crt")
    parser.add_argument("--cert", default="var/pki/cards/doctor.crt")
    parser.add_argument("--key", default="var/pki/cards/doctor.key")
    parser.add_argument("--dossier", required=True, help="dossiers/{id}")
    asyncio.run(main(parser.parse_args()))
