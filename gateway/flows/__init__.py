"""The flows: bank case files to agency slices, agency results to the bank."""
