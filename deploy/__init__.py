"""Tooling kept beside template.yaml (not shipped in the wheel).

* :mod:`deploy.cfn`: the template read as CloudFormation does (short-form tags, the SAM transform,
  conditions and intrinsics evaluated for one set of parameters);
* :mod:`deploy.sections`: the template's sections generated from the code;
* :mod:`deploy.policies`: the golden IAM allow-lists, ``deploy/iam/<LogicalId>.json``;
* :mod:`deploy.gates`: what .ci/run's security gates conclude from the tools' reports.
"""
