"""What a rollout test starts from, made through the real AWS API (boto3)
against moto: the consumers a team set up by hand last year.

Usage: edge_fixtures.py ENDPOINT COMMAND ARGS...

  iam-self-signed PATH NAME CN     upload a self-signed certificate for CN
                                   under PATH; prints `ARN ID`
  elb NAME PORT CERT_ARN           a classic load balancer with an HTTPS
                                   listener on PORT
  elb-set NAME PORT CERT_ARN       switch that listener by hand
  alb NAME CERT_ARN [EXTRA_ARN]    an ALB (its VPC and subnets) with an
                                   HTTPS listener on 443 (EXTRA_ARN as an
                                   additional certificate); prints its ARN
  distribution ALIAS REF           a CloudFront distribution for ALIAS
                                   with REF (IAM id or ACM ARN); prints its id
  show                             JSON: every distribution (comment,
                                   references), classic listener and ALB
                                   listener certificate, IAM certificate
"""
import datetime
import json
import sys

import boto3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ENDPOINT = sys.argv[1]
KW = dict(
    endpoint_url=ENDPOINT,
    region_name="us-east-1",
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
)


def client(name):
    return boto3.client(name, **KW)


def self_signed(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=300))
        .not_valid_after(now + datetime.timedelta(days=20))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM).decode(),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )


def main():
    command, args = sys.argv[2], sys.argv[3:]
    if command == "iam-self-signed":
        path, name, cn = args
        cert, key = self_signed(cn)
        meta = client("iam").upload_server_certificate(
            Path=path, ServerCertificateName=name, CertificateBody=cert, PrivateKey=key
        )["ServerCertificateMetadata"]
        print(meta["Arn"], meta["ServerCertificateId"])
    elif command == "elb":
        name, port, arn = args
        client("elb").create_load_balancer(
            LoadBalancerName=name,
            Listeners=[{
                "Protocol": "HTTPS",
                "LoadBalancerPort": int(port),
                "InstanceProtocol": "HTTP",
                "InstancePort": 80,
                "SSLCertificateId": arn,
            }],
            AvailabilityZones=["us-east-1a"],
        )
    elif command == "elb-set":
        name, port, arn = args
        client("elb").set_load_balancer_listener_ssl_certificate(
            LoadBalancerName=name, LoadBalancerPort=int(port), SSLCertificateId=arn
        )
    elif command == "alb":
        name, arn, extra = args[0], args[1], args[2:]
        ec2 = client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{z}")[
                "Subnet"
            ]["SubnetId"]
            for i, z in ((1, "a"), (2, "b"))
        ]
        elbv2 = client("elbv2")
        lb = elbv2.create_load_balancer(Name=name, Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
        tg = elbv2.create_target_group(Name=f"{name}-tg", Protocol="HTTP", Port=80, VpcId=vpc)[
            "TargetGroups"
        ][0]["TargetGroupArn"]
        listener = elbv2.create_listener(
            LoadBalancerArn=lb,
            Protocol="HTTPS",
            Port=443,
            Certificates=[{"CertificateArn": arn}],
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
        )["Listeners"][0]["ListenerArn"]
        if extra:
            elbv2.add_listener_certificates(ListenerArn=listener, Certificates=[{"CertificateArn": extra[0]}])
        print(listener)
    elif command == "distribution":
        alias, ref = args
        viewer = {"SSLSupportMethod": "sni-only", "MinimumProtocolVersion": "TLSv1.2_2021",
                  "CloudFrontDefaultCertificate": False}
        viewer["ACMCertificateArn" if ref.startswith("arn:") else "IAMCertificateId"] = ref
        out = client("cloudfront").create_distribution(DistributionConfig={
            "CallerReference": f"{alias}-{datetime.datetime.now().timestamp()}",
            "Origins": {"Quantity": 1, "Items": [{
                "Id": "origin",
                "DomainName": "origin.example.test",
                "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only"},
            }]},
            "DefaultCacheBehavior": {
                "TargetOriginId": "origin",
                "ViewerProtocolPolicy": "redirect-to-https",
                "MinTTL": 0,
                "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
            },
            "Comment": f"{alias} as set up by hand",
            "Enabled": True,
            "Aliases": {"Quantity": 1, "Items": [alias]},
            "ViewerCertificate": viewer,
        })
        print(out["Distribution"]["Id"])
    elif command == "show":
        cf = client("cloudfront")
        distributions = {}
        for d in cf.list_distributions()["DistributionList"].get("Items", []):
            config = cf.get_distribution_config(Id=d["Id"])["DistributionConfig"]
            vc = config.get("ViewerCertificate", {})
            distributions[d["Id"]] = {
                "comment": config.get("Comment"),
                "references": [r for r in (vc.get("IAMCertificateId"), vc.get("ACMCertificateArn")) if r],
            }
        classic = {}
        for lb in client("elb").describe_load_balancers()["LoadBalancerDescriptions"]:
            for l in lb["ListenerDescriptions"]:
                classic[f'{lb["LoadBalancerName"]}:{l["Listener"]["LoadBalancerPort"]}'] = l["Listener"].get(
                    "SSLCertificateId"
                )
        elbv2 = client("elbv2")
        listeners = {}
        for lb in elbv2.describe_load_balancers()["LoadBalancers"]:
            for l in elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]:
                certs = elbv2.describe_listener_certificates(ListenerArn=l["ListenerArn"])["Certificates"]
                listeners[l["ListenerArn"]] = [[c["CertificateArn"], c.get("IsDefault", False)] for c in certs]
        iam = [
            {"name": m["ServerCertificateName"], "arn": m["Arn"], "id": m["ServerCertificateId"]}
            for m in client("iam").list_server_certificates()["ServerCertificateMetadataList"]
        ]
        print(json.dumps({"distributions": distributions, "elb": classic, "listeners": listeners, "iam": iam}))
    else:
        sys.exit(f"unknown command {command}")


main()
