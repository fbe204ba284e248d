"""Benchmarks and the HTTP load test: they import the library (``recourse``) and the service
(``api``); neither ever imports them.

* :mod:`.scfe` — ``recourse bench scfe`` (S-CFE vs DiCE on Wine and German credit);
* :mod:`.engine` — ``recourse bench engine`` (engine latency and throughput by batch size);
* :mod:`.audit` — ``recourse bench audit`` (population audit throughput, MILP gap);
* :mod:`.vision` — ``recourse bench vision`` (attacks, IS curves, S-CFE on MNIST, AXAI timing);
* :mod:`.http` — ``recourse bench http`` (load test of ``recourse serve`` on loopback).
"""
