module sidecarset.local/testagent

go 1.26.0
