"""Entity names of other label sets mapped onto the appliance's (in the scorer, never in the
file): presidio-research writes `ADDRESS` for a street address, i2b2/CoNLL-style sets write
`PER`, `NAME`, `PHONE`, ... Unknown names are kept as they are (and scored under them)."""

from __future__ import annotations

GOLD_TO_OURS = {
    "ADDRESS": "STREET_ADDRESS", "STREET": "STREET_ADDRESS", "STREET_ADDRESS": "STREET_ADDRESS",
    "PER": "PERSON", "PERSON": "PERSON", "NAME": "PERSON", "FIRST_NAME": "PERSON",
    "LAST_NAME": "PERSON", "PATIENT": "PERSON", "DOCTOR": "PERSON", "NAME_STUDENT": "PERSON",
    "PHONE": "PHONE_NUMBER", "PHONE_NUM": "PHONE_NUMBER", "PHONE_NUMBER": "PHONE_NUMBER",
    "FAX": "PHONE_NUMBER",
    "EMAIL": "EMAIL_ADDRESS", "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "CREDIT_CARD": "CREDIT_CARD", "CREDIT_CARD_NUMBER": "CREDIT_CARD", "CARD": "CREDIT_CARD",
    "IBAN": "IBAN_CODE", "IBAN_CODE": "IBAN_CODE",
    "SSN": "US_SSN", "US_SSN": "US_SSN",
    "IP": "IP_ADDRESS", "IP_ADDRESS": "IP_ADDRESS", "IPV4": "IP_ADDRESS", "IPV6": "IP_ADDRESS",
    "DRIVER_LICENSE": "US_DRIVER_LICENSE", "US_DRIVER_LICENSE": "US_DRIVER_LICENSE",
    "DRIVERS_LICENSE": "US_DRIVER_LICENSE", "LICENSE": "US_DRIVER_LICENSE",
    "LOC": "LOCATION", "GPE": "LOCATION", "CITY": "LOCATION", "COUNTRY": "LOCATION",
    "LOCATION": "LOCATION",
    "ORG": "ORGANIZATION", "ORGANIZATION": "ORGANIZATION", "ORGANISATION": "ORGANIZATION",
    "DATE": "DATE_TIME", "DATE_TIME": "DATE_TIME",
}
"""Other label sets' names -> the appliance's entity names."""


def ours(entity: str) -> str:
    """The appliance's name for a gold label (upper-cased; unknown names unchanged)."""
    key = entity.strip().upper()
    return GOLD_TO_OURS.get(key, key)
