"""The data holder's side: log readers, data quality, labelling, local training, ClientApp."""
