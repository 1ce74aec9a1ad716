"""The WSDL the gateway publishes at ``/mdmws/<config-id>/AdminService?wsdl``.

Document/literal wrapped, one port type, a SOAP 1.1 and a SOAP 1.2 binding, both at the
configuration's HTTPS address. The names are ours (DIVERGENCES.md): an MDM that imports
this WSDL, or a script built with zeep or any SOAP toolkit, gets typed operations.
Authentication (HTTP Basic or a WS-Security UsernameToken) is not part of the schema.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from .soap import NS

OPERATIONS = ("Authenticate", "ListDigitalIds", "ListProfiles", "RequestScepChallenge", "Enroll",
              "Renew", "Revoke", "GetCertificateStatus")

SCHEMA = f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:m="{NS}"
    targetNamespace="{NS}" elementFormDefault="qualified">
  <xs:complexType name="Variable">
    <xs:sequence>
      <xs:element name="Name" type="xs:string"/>
      <xs:element name="Value" type="xs:string"/>
    </xs:sequence>
  </xs:complexType>
  <xs:complexType name="Variables">
    <xs:sequence>
      <xs:element name="Variable" type="m:Variable" minOccurs="0" maxOccurs="unbounded"/>
    </xs:sequence>
  </xs:complexType>
  <xs:complexType name="DigitalId">
    <xs:sequence>
      <xs:element name="Name" type="xs:string"/>
      <xs:element name="Description" type="xs:string"/>
      <xs:element name="CaId" type="xs:string"/>
      <xs:element name="Profile" type="xs:string"/>
      <xs:element name="ParentDn" type="xs:string"/>
      <xs:element name="RdnFormat" type="xs:string"/>
      <xs:element name="RequiredVariable" type="xs:string" minOccurs="0" maxOccurs="unbounded"/>
      <xs:element name="ServerKeyGeneration" type="xs:boolean"/>
      <xs:element name="WebServiceUrl" type="xs:string"/>
      <xs:element name="ScepUrl" type="xs:string" minOccurs="0"/>
    </xs:sequence>
  </xs:complexType>
  <xs:complexType name="Profile">
    <xs:sequence>
      <xs:element name="Name" type="xs:string"/>
      <xs:element name="Description" type="xs:string"/>
      <xs:element name="Validity" type="xs:string"/>
      <xs:element name="KeyUsage" type="xs:string" minOccurs="0" maxOccurs="unbounded"/>
      <xs:element name="ExtendedKeyUsage" type="xs:string" minOccurs="0" maxOccurs="unbounded"/>
      <xs:element name="ServerKeyGeneration" type="xs:boolean"/>
    </xs:sequence>
  </xs:complexType>
  <xs:complexType name="EnrollResult">
    <xs:sequence>
      <xs:element name="SerialNumber" type="xs:string"/>
      <xs:element name="Subject" type="xs:string"/>
      <xs:element name="NotBefore" type="xs:dateTime"/>
      <xs:element name="NotAfter" type="xs:dateTime"/>
      <xs:element name="Certificate" type="xs:base64Binary"/>
      <xs:element name="Pkcs12" type="xs:base64Binary"/>
      <xs:element name="Password" type="xs:string" minOccurs="0"/>
    </xs:sequence>
  </xs:complexType>
  <xs:complexType name="CertificateStatus">
    <xs:sequence>
      <xs:element name="SerialNumber" type="xs:string"/>
      <xs:element name="Status" type="xs:string"/>
      <xs:element name="Subject" type="xs:string"/>
      <xs:element name="Profile" type="xs:string"/>
      <xs:element name="NotBefore" type="xs:dateTime"/>
      <xs:element name="NotAfter" type="xs:dateTime"/>
      <xs:element name="RevokedAt" type="xs:dateTime" minOccurs="0"/>
      <xs:element name="RevocationReason" type="xs:string" minOccurs="0"/>
    </xs:sequence>
  </xs:complexType>
  <xs:element name="Fault">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="Code" type="xs:string"/>
        <xs:element name="Message" type="xs:string"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>

  <xs:element name="Authenticate"><xs:complexType><xs:sequence/></xs:complexType></xs:element>
  <xs:element name="AuthenticateResponse">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="ConfigurationId" type="xs:string"/>
        <xs:element name="Platform" type="xs:string"/>
        <xs:element name="Username" type="xs:string"/>
        <xs:element name="ServerTime" type="xs:dateTime"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:element name="ListDigitalIds"><xs:complexType><xs:sequence/></xs:complexType></xs:element>
  <xs:element name="ListDigitalIdsResponse">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="DigitalId" type="m:DigitalId" minOccurs="0" maxOccurs="unbounded"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:element name="ListProfiles"><xs:complexType><xs:sequence/></xs:complexType></xs:element>
  <xs:element name="ListProfilesResponse">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="Profile" type="m:Profile" minOccurs="0" maxOccurs="unbounded"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:element name="RequestScepChallenge">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="DigitalId" type="xs:string" minOccurs="0"/>
        <xs:element name="DeviceId" type="xs:string" minOccurs="0"/>
        <xs:element name="Variables" type="m:Variables" minOccurs="0"/>
        <xs:element name="ValidityMinutes" type="xs:int" minOccurs="0"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:element name="RequestScepChallengeResponse">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="Challenge" type="xs:string"/>
        <xs:element name="ExpiresAt" type="xs:dateTime"/>
        <xs:element name="Subject" type="xs:string"/>
        <xs:element name="ScepUrl" type="xs:string"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:element name="Enroll">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="DigitalId" type="xs:string" minOccurs="0"/>
        <xs:element name="DeviceId" type="xs:string" minOccurs="0"/>
        <xs:element name="Variables" type="m:Variables" minOccurs="0"/>
        <xs:element name="Password" type="xs:string" minOccurs="0"/>
        <xs:element name="KeyAlgorithm" type="xs:string" minOccurs="0"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:element name="EnrollResponse" type="m:EnrollResult"/>
  <xs:element name="Renew">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="SerialNumber" type="xs:string" minOccurs="0"/>
        <xs:element name="DigitalId" type="xs:string" minOccurs="0"/>
        <xs:element name="DeviceId" type="xs:string" minOccurs="0"/>
        <xs:element name="Variables" type="m:Variables" minOccurs="0"/>
        <xs:element name="Password" type="xs:string" minOccurs="0"/>
        <xs:element name="KeyAlgorithm" type="xs:string" minOccurs="0"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:element name="RenewResponse" type="m:EnrollResult"/>
  <xs:element name="Revoke">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="SerialNumber" type="xs:string"/>
        <xs:element name="Reason" type="xs:string" minOccurs="0"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:element name="RevokeResponse" type="m:CertificateStatus"/>
  <xs:element name="GetCertificateStatus">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="SerialNumber" type="xs:string"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:element name="GetCertificateStatusResponse" type="m:CertificateStatus"/>
</xs:schema>"""

_BINDINGS = {
    "Soap11": "http://schemas.xmlsoap.org/wsdl/soap/",
    "Soap12": "http://schemas.xmlsoap.org/wsdl/soap12/",
}


def action(operation: str) -> str:
    return f"{NS}:{operation}"


def wsdl(address: str) -> bytes:
    """The WSDL with both ports at ``address`` (the configuration's AdminService URL)."""
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n'
             f'<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:m="{NS}"\n'
             f'    xmlns:soap="{_BINDINGS["Soap11"]}" xmlns:soap12="{_BINDINGS["Soap12"]}"\n'
             f'    name="AdminService" targetNamespace="{NS}">\n'
             f'<wsdl:types>\n{SCHEMA}\n</wsdl:types>\n'
             '<wsdl:message name="MdmFault"><wsdl:part name="detail" element="m:Fault"/></wsdl:message>\n']
    for op in OPERATIONS:
        parts.append(f'<wsdl:message name="{op}Request"><wsdl:part name="parameters" element="m:{op}"/></wsdl:message>\n'
                     f'<wsdl:message name="{op}Response"><wsdl:part name="parameters" element="m:{op}Response"/>'
                     '</wsdl:message>\n')
    parts.append('<wsdl:portType name="AdminServicePortType">\n')
    for op in OPERATIONS:
        parts.append(f'  <wsdl:operation name="{op}"><wsdl:input message="m:{op}Request"/>'
                     f'<wsdl:output message="m:{op}Response"/><wsdl:fault name="MdmFault" message="m:MdmFault"/>'
                     '</wsdl:operation>\n')
    parts.append('</wsdl:portType>\n')
    for name, prefix in (("Soap11", "soap"), ("Soap12", "soap12")):
        parts.append(f'<wsdl:binding name="AdminService{name}" type="m:AdminServicePortType">\n'
                     f'  <{prefix}:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>\n')
        for op in OPERATIONS:
            parts.append(f'  <wsdl:operation name="{op}"><{prefix}:operation soapAction="{action(op)}" style="document"/>'
                         f'<wsdl:input><{prefix}:body use="literal"/></wsdl:input>'
                         f'<wsdl:output><{prefix}:body use="literal"/></wsdl:output>'
                         f'<wsdl:fault name="MdmFault"><{prefix}:fault name="MdmFault" use="literal"/></wsdl:fault>'
                         '</wsdl:operation>\n')
        parts.append('</wsdl:binding>\n')
    parts.append('<wsdl:service name="AdminService">\n')
    for name, prefix in (("Soap11", "soap"), ("Soap12", "soap12")):
        parts.append(f'  <wsdl:port name="AdminService{name}" binding="m:AdminService{name}">'
                     f'<{prefix}:address location={quoteattr(address)}/></wsdl:port>\n')
    parts.append('</wsdl:service>\n</wsdl:definitions>\n')
    return "".join(parts).encode()
