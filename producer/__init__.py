"""MOEX quotes into Kafka: a synthetic TQBR market, file replay and the ISS REST API.

`python -m producer --help`; the topic payloads are in producer/records.py, the checks in
producer/validate.py. See docs/producer.md.
"""
